import Foundation
import Testing

@testable import SluiceServer

@Suite struct PreSharedKeyFileTests {
    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("psk-\(UUID().uuidString)").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func readsIdentitiesAndHexKeys() throws {
        let path = try write("# comment\n\nsensor1:0aff\nwith:colon:10\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let keys = try TLSContexts.preSharedKeys(path)
        #expect(keys == ["sensor1": [0x0A, 0xFF], "with:colon": [0x10]])
    }

    @Test(arguments: ["sensor1\n", "sensor1:\n", ":0a\n", "sensor1:xyz\n", "sensor1:abc\n"])
    func aBadLineIsAnErrorNamingIt(_ text: String) throws {
        let path = try write(text)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: (any Error).self) { try TLSContexts.preSharedKeys(path) }
    }

    @Test func aMissingFileIsAnError() {
        #expect(throws: (any Error).self) { try TLSContexts.preSharedKeys("/nonexistent/psk") }
    }
}
