import Foundation
import Testing

@testable import SluiceConfig

// Replays the FuzzConfig corpora without the sanitizer: the seed configurations (fixtures/fuzz/config/)
// and every input the fuzzer ever reported (fixtures/fuzz/crashes/FuzzConfig/). As in
// Fuzz/Sources/FuzzConfig/FuzzConfig.swift, the bytes are read as UTF-8 and must parse or throw a
// ConfigError, never trap.

private func fixtureFiles(_ folder: String) -> [String] {
    let dir = repositoryRoot + "/fixtures/fuzz/" + folder
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    return names.filter { !$0.hasPrefix(".") }.sorted().map { dir + "/" + $0 }
}

/// Parses the file's bytes as the fuzz target does; returns the error, or nil when it parsed.
private func fuzzParse(_ path: String) throws -> ConfigError? {
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    do {
        _ = try GatewayConfig.parse(String(decoding: bytes, as: UTF8.self), fileName: "fuzz.conf")
        return nil
    } catch {
        return error
    }
}

@Suite("Fuzz corpus")
struct FuzzCorpusTests {
    /// The seeds are real configurations and parse, except the `error-*` ones, which must be refused.
    @Test func seedCorpus() throws {
        let seeds = fixtureFiles("config")
        #expect(seeds.count >= 8)
        for path in seeds {
            let error = try fuzzParse(path)
            if (path as NSString).lastPathComponent.hasPrefix("error-") {
                #expect(error != nil, "\(path) parsed")
            } else {
                #expect(error == nil, "\(path): \(String(describing: error))")
            }
        }
    }

    /// Inputs the fuzzer reported: they must only parse or throw.
    @Test func crashCorpusDoesNotCrash() throws {
        for path in fixtureFiles("crashes/FuzzConfig") {
            _ = try fuzzParse(path)
        }
    }
}
