// Payloads in the packet model are NIOCore `ByteBuffer`s (slices of the read buffer, no copy);
// re-export the type so users of the model need not import NIOCore for it.
@_exported import struct NIOCore.ByteBuffer
@_exported import struct NIOCore.ByteBufferAllocator
