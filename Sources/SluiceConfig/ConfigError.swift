/// An error found while reading or validating `gateway.conf`.
///
/// Every error names the file and, when it comes from a line, the line number and key:
/// `gateway.conf:12: key 'max_inflight_messages': expected a whole number from 0 to 65535, got 'abc'`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What class of mistake this is; tests and `sluice check` can switch on it.
    public enum Kind: Sendable, Equatable {
        /// The configuration file (or an included file or directory) could not be read.
        case unreadableFile
        /// A key Sluice does not know.
        case unknownKey
        /// A Mosquitto key Sluice knows but deliberately does not support; the message says what to use.
        case unsupportedKey
        /// A key with no value.
        case missingValue
        /// More values than the key takes.
        case tooManyValues
        /// A value of the wrong form or out of range.
        case badValue
        /// A `topic` line that breaks Mosquitto's rules.
        case badTopic
        /// Two `connection` sections with the same name.
        case duplicateConnection
        /// Two `listener` lines with the same port and address.
        case duplicateListener
        /// A listener-only key before any `listener` line.
        case listenerKeyOutsideListener
        /// A bridge-only key before any `connection` line.
        case bridgeKeyOutsideConnection
        /// A file or directory the configuration refers to does not exist.
        case missingFile
        /// A section lacks something it needs (a bridge without address or topic, TLS without a key file…).
        case incompleteSection
    }

    public var kind: Kind
    /// The file as it was named to the parser (the path given to `load`, or `fileName`).
    public var file: String
    /// 1-based line number, nil for errors about a whole file.
    public var line: Int?
    /// The key on that line, nil for errors about a whole file.
    public var key: String?
    /// What was wrong, in words.
    public var message: String

    public init(_ kind: Kind, file: String, line: Int?, key: String?, _ message: String) {
        self.kind = kind
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "key '\(key)': " }
        return text + message
    }
}
