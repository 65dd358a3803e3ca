// Note on the syntax (Mosquitto's): one `key value…` per line; a line whose first non-blank
// character is `#` is a comment, and `#` anywhere else is data (topic filters need it, so
// `key value # note` is a value with extra tokens, not a trailing comment). Values split on
// blanks; keys whose value is one string (paths, user names) take the rest of the line, as
// Mosquitto does. `include_dir DIR` is expanded here, in place, with the `*.conf` files of DIR
// in sorted order, so sections carry on across files exactly as in Mosquitto.

import SluicePOSIX
#if canImport(Glibc)
    import Glibc
#endif

/// One non-comment line: its place, its key and its raw value.
struct Directive: Sendable {
    var file: String
    var line: Int
    var key: String
    /// Everything after the key, trimmed.
    var rest: String
    /// `rest` split on blanks.
    var values: [String]

    func error(_ kind: ConfigError.Kind, _ message: String) -> ConfigError {
        ConfigError(kind, file: file, line: line, key: key, message)
    }
}

enum Lexer {
    static func directives(
        in text: String,
        fileName: String,
        includeAllowed: Bool = true
    ) throws(ConfigError) -> [Directive] {
        var result: [Directive] = []
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingBlanks()
            if line.isEmpty || line.hasPrefix("#") { continue }
            let key: String
            let rest: String
            if let blank = line.firstIndex(where: { $0 == " " || $0 == "\t" }) {
                key = String(line[..<blank])
                rest = line[blank...].trimmingBlanks()
            } else {
                key = line
                rest = ""
            }
            let directive = Directive(
                file: fileName,
                line: index + 1,
                key: key,
                rest: rest,
                values: rest.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            )
            if key == "include_dir" {
                guard includeAllowed else {
                    throw directive.error(.badValue, "include_dir is only allowed in the main configuration file")
                }
                result += try included(by: directive)
            } else {
                result.append(directive)
            }
        }
        return result
    }

    /// The directives of every `*.conf` file in the directory, files in sorted order.
    private static func included(by directive: Directive) throws(ConfigError) -> [Directive] {
        let dir = try directive.singleString()
        guard FileSystem.kind(dir) == .directory else {
            throw directive.error(.missingFile, "directory '\(dir)' does not exist")
        }
        let names: [String]
        do {
            names = try FileSystem.directoryEntries(dir)
        } catch {
            throw directive.error(.unreadableFile, "cannot read directory '\(dir)': \(fileErrorText(error))")
        }
        var result: [Directive] = []
        for name in names.filter({ $0.hasSuffix(".conf") }).sorted() {
            let path = dir.hasSuffix("/") ? dir + name : dir + "/" + name
            let text = try readFile(path, from: directive)
            result += try directives(in: text, fileName: path, includeAllowed: false)
        }
        return result
    }

    /// Reads a UTF-8 file; `directive` (if any) is the line that named it.
    static func readFile(_ path: String, from directive: Directive?) throws(ConfigError) -> String {
        do {
            return try FileSystem.readText(path)
        } catch {
            let reason = FileSystem.exists(path) ? "cannot read it" : "no such file"
            if let directive {
                throw directive.error(.unreadableFile, "cannot read '\(path)': \(reason)")
            }
            throw ConfigError(.unreadableFile, file: path, line: nil, key: nil, "cannot read the file: \(reason)")
        }
    }
}
