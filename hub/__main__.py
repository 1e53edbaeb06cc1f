import sys

from mixerhub.cli import main

sys.exit(main())
