"""OIP v2 gRPC stubs generated from Triton's published protos (proto/, see README.md; `make grpc-stubs`).

The messages live in POOL, a descriptor pool of their own, not protobuf's default one: tritonclient.grpc (and
KServe) register the same `inference.*` symbols there, and two registrations that differ by one field (another
proto release) fail on import. Wire-compatible all the same: the wire carries field numbers, not pools."""
from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
