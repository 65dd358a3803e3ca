import NIOCore
import NIOEmbedded
import Testing

@testable import SluiceServer

/// The recorder reads the alert a client sends in the clear before NIOSSL turns it into a record-layer error.
@Suite struct TLSAlertRecorderTests {
    static func feed(_ chunks: [[UInt8]]) throws -> (alert: String?, passed: [UInt8]) {
        let recorder = TLSAlertRecorder()
        let channel = EmbeddedChannel(handler: recorder)
        for chunk in chunks { try channel.writeInbound(ByteBuffer(bytes: chunk)) }
        var passed: [UInt8] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) { passed += Array(buffer.readableBytesView) }
        _ = try channel.finish()
        return (recorder.alert, passed)
    }

    static let clientHello: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00]
    static let plaintextUnknownCA: [UInt8] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 48]

    @Test func plaintextAlertAfterTheHelloIsNamed() throws {
        let (alert, passed) = try Self.feed([Self.clientHello, Self.plaintextUnknownCA])
        #expect(alert == "unknown_ca")
        #expect(passed == Self.clientHello + Self.plaintextUnknownCA)  // every byte still reaches NIOSSL
        // Several records in one read.
        #expect(
            try Self.feed([Self.clientHello + [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 42]]).alert == "bad_certificate"
        )
    }

    @Test func encryptedTrafficStopsTheLookout() throws {
        // Application data (TLS 1.3 encrypted) first: a later 2-byte "alert" is not read.
        let encrypted: [UInt8] = [0x17, 0x03, 0x03, 0x00, 0x01, 0xAA]
        #expect(try Self.feed([encrypted, Self.plaintextUnknownCA]).alert == nil)
        // It leaves the pipeline then, and what follows still passes.
        let after = try Self.feed([encrypted, Self.clientHello])
        #expect(after.passed == encrypted + Self.clientHello)
        let recorder = TLSAlertRecorder()
        let channel = EmbeddedChannel(handler: recorder)
        try channel.writeInbound(ByteBuffer(bytes: encrypted))
        #expect(throws: (any Error).self) { try channel.pipeline.syncOperations.handler(type: TLSAlertRecorder.self) }
        _ = try channel.finish(acceptAlreadyClosed: true)
        let changeCipherSpec: [UInt8] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01]
        #expect(try Self.feed([changeCipherSpec, Self.plaintextUnknownCA]).alert == nil)
        // An encrypted TLS 1.2 alert is longer than 2 bytes: not taken for a plaintext one.
        #expect(try Self.feed([[0x15, 0x03, 0x03, 0x00, 0x1A] + [UInt8](repeating: 7, count: 26)]).alert == nil)
    }

    @Test func garbageAndTruncatedRecordsAreHarmless() throws {
        #expect(try Self.feed([[0x15, 0x03, 0x03, 0x00, 0x02, 0x02]]).alert == nil)  // description cut off
        #expect(try Self.feed([[0x15, 0x03]]).alert == nil)
        #expect(try Self.feed([[]]).alert == nil)
        #expect(try Self.feed([[UInt8](repeating: 0xFF, count: 300)]).alert == nil)
        #expect(try Self.feed([[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 200]]).alert == "alert 200")
    }
}
