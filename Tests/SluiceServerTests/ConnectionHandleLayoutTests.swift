import NIOCore
import Testing

@testable import SluiceServer

/// The broker host keeps one `ConnectionHandle` per connection in a dictionary, whose every slot,
/// used or not, costs the stride (issue 17, RSS per idle connection).
@Suite struct ConnectionHandleLayoutTests {
    @Test func aHandleIsSixWords() {
        // The channel (two words), the handler bound to its loop (three), the peer's address (one:
        // the channel's shared value, not a formatted string).
        #expect(MemoryLayout<SocketAddress?>.size == MemoryLayout<UnsafeRawPointer>.size)
        #expect(MemoryLayout<ConnectionHandle>.stride <= 48)
    }
}
