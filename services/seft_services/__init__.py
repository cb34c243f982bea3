"""gRPC services of the SEFT platform: generator, reviser, critic and labeller.

protocol.py validates requests, servicers.py is the gRPC glue, backends/ hold the models,
server.py runs them with health checking and reflection."""
