import NIOCore
import Testing

@testable import SluiceServer

/// The broker host keeps one `ConnectionHandle` per connection in a dictionary, whose every slot,
/// used or not, costs the stride (issue 17, RSS per idle connection).
@Suite struct ConnectionHandleLayoutTests {
    @Test func aHandleIsFourWords() {
        // The channel (two words), the handler (one: it lives on the host's loop, no loop-bound box),
        // the peer's address (one: the channel's shared value, not a formatted string).
        #expect(MemoryLayout<SocketAddress?>.size == MemoryLayout<UnsafeRawPointer>.size)
        #expect(MemoryLayout<ConnectionHandle>.stride <= 32)
    }
}
