// libFuzzer entry point for the gateway.conf parser (lexer, key table, value parsers, validation).
// No `main` and no `@main`: libFuzzer supplies `main`. The input is read as UTF-8 (invalid sequences
// become U+FFFD, as when a file is read leniently) and must parse or throw `ConfigError`, never trap.
// `include_dir` and file-valued keys look at the disk; scripts/fuzz.sh runs this in an empty temp dir.
// Tests/SluiceConfigTests/FuzzCorpusTests.swift replays the corpus the same way.

import SluiceConfig

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        _ = try GatewayConfig.parse(text, fileName: "fuzz.conf")
    } catch {
        // A typed ConfigError is the expected outcome for most inputs.
    }
    return 0
}
