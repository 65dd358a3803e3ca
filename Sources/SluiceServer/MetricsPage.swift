// The Prometheus text exposition format (0.0.4), written here rather than through swift-prometheus's
// registry: version 2.4 emits families in dictionary order (a different order on every run), prints
// every gauge as a Double (`0.0`) and keeps counters it can only increment, so absolute values read at
// scrape time needed bookkeeping. A page is built per scrape from values read then, so it cannot go stale.

/// One scrape's worth of metric families, rendered with families sorted by name and samples sorted by
/// their labels: the same gateway gives the same order every time.
struct MetricsPage {
    enum Kind: String {
        case counter, gauge
    }

    /// A sample's value as it is printed: integers stay integers.
    enum Value: Equatable {
        case integer(Int64)
        case real(Double)

        var text: String {
            switch self {
            case .integer(let value): return "\(value)"
            case .real(let value):
                if value.isNaN { return "NaN" }
                if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
                if value == value.rounded(), abs(value) < 1e15 { return "\(Int64(value))" }
                return "\(value)"
            }
        }
    }

    private struct Family {
        var kind: Kind
        var help: String
        var samples: [String: Value] = [:]
    }

    private var families: [String: Family] = [:]
    /// Old names printed again under their new family's samples, one release long.
    private var aliases: [(old: String, new: String)] = []

    /// Adds a sample. A family keeps the kind and help of its first sample; a sample whose kind
    /// disagrees is a programming error and is left out rather than printed under the wrong TYPE.
    mutating func add(_ name: String, _ kind: Kind, _ help: String, _ value: Value, labels: [(String, String)] = []) {
        assert(Self.isValidName(name), "metric name \(name)")
        var family = families[name] ?? Family(kind: kind, help: help)
        guard family.kind == kind else {
            assertionFailure("\(name) is a \(family.kind), not a \(kind)")
            return
        }
        family.samples[Self.labelText(labels)] = value
        families[name] = family
    }

    /// Names a family before it has samples (counters by a reason none has happened for yet), so
    /// dashboards and alert rules find it from the start; it prints HELP and TYPE alone.
    mutating func declare(_ name: String, _ kind: Kind, _ help: String) {
        if families[name] == nil { families[name] = Family(kind: kind, help: help) }
    }

    mutating func counter(_ name: String, _ help: String, _ value: some BinaryInteger, labels: [(String, String)] = [])
    {
        add(name, .counter, help, .integer(Int64(clamping: value)), labels: labels)
    }

    mutating func gauge(_ name: String, _ help: String, _ value: some BinaryInteger, labels: [(String, String)] = []) {
        add(name, .gauge, help, .integer(Int64(clamping: value)), labels: labels)
    }

    mutating func gauge(_ name: String, _ help: String, _ value: Double, labels: [(String, String)] = []) {
        add(name, .gauge, help, .real(value), labels: labels)
    }

    /// Prints `old` as a copy of `new`'s family (when `new` has samples), its HELP saying so.
    mutating func alias(_ old: String, of new: String) {
        aliases.append((old, new))
    }

    /// The value of one sample, for tests and for readers built on the same page.
    func value(_ name: String, labels: [(String, String)] = []) -> Value? {
        families[name]?.samples[Self.labelText(labels)]
    }

    var familyNames: [String] { families.keys.sorted() }

    func render() -> String {
        var all = families
        for (old, new) in aliases {
            guard let family = families[new], all[old] == nil else { continue }
            all[old] = Family(
                kind: family.kind,
                help: "DEPRECATED: renamed \(new); this name goes away in the next release",
                samples: family.samples
            )
        }
        var out = ""
        for name in all.keys.sorted() {
            let family = all[name]!
            out += "# HELP \(name) \(Self.escapeHelp(family.help))\n"
            out += "# TYPE \(name) \(family.kind.rawValue)\n"
            for labels in family.samples.keys.sorted() {
                out += "\(name)\(labels) \(family.samples[labels]!.text)\n"
            }
        }
        return out
    }

    // MARK: Text format rules

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else {
            return false
        }
        return name.utf8.allSatisfy { byte in
            byte == UInt8(ascii: "_") || byte == UInt8(ascii: ":")
                || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
    }

    /// `{a="x",b="y"}` with values escaped (`\\`, `\"`, `\n`), or "" without labels.
    static func labelText(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        let pairs = labels.map { name, value -> String in
            var escaped = ""
            for scalar in value.unicodeScalars {
                switch scalar {
                case "\\": escaped += "\\\\"
                case "\"": escaped += "\\\""
                case "\n": escaped += "\\n"
                default: escaped.unicodeScalars.append(scalar)
                }
            }
            return "\(name)=\"\(escaped)\""
        }
        return "{" + pairs.joined(separator: ",") + "}"
    }

    /// HELP text escapes only `\\` and `\n`.
    static func escapeHelp(_ help: String) -> String {
        var escaped = ""
        for character in help {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
