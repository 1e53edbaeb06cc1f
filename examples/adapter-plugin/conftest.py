# The `mixerhub_harness` fixture of mixerhub's test kit (docs/plugins.md, "Testing a plugin").
pytest_plugins = ["mixerhub.testkit"]
