"""The hub's network faces: one grpc.aio server, one HTTP (admin) server."""
