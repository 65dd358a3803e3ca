/// Foundation's `.convertToSnakeCase` / `.convertFromSnakeCase` key strategies, rewritten on a `JSONValue`
/// so that documents written by JSONEncoder before keep their keys byte for byte.
public enum JSONKeyCase {
    /// `oldestAgeSeconds` → `oldest_age_seconds`. A run of capitals is one word up to the capital before the
    /// next lower-case letter (`uRLValue` → `u_rl_value`), as Foundation splits it; digits join the word
    /// before them (`p99Value` → `p99_value`).
    public static func snake(_ key: String) -> String {
        let characters = Array(key)
        guard characters.count > 1 else { return key }
        var words: [ArraySlice<Character>] = []
        var wordStart = 0
        var search = 1
        while let upper = characters[search...].firstIndex(where: \.isUppercase) {
            words.append(characters[wordStart..<upper])
            guard let lower = characters[upper...].firstIndex(where: \.isLowercase) else {
                wordStart = upper
                search = characters.count
                break
            }
            if lower == upper + 1 {
                wordStart = upper
            } else {
                words.append(characters[upper..<(lower - 1)])
                wordStart = lower - 1
            }
            search = lower + 1
            if search >= characters.count { break }
        }
        words.append(characters[wordStart...])
        return words.map { String($0).lowercased() }.joined(separator: "_")
    }

    /// `oldest_age_seconds` → `oldestAgeSeconds`; leading and trailing underscores stay, a key without an
    /// inner underscore is left as it is.
    public static func camel(fromSnake key: String) -> String {
        guard let first = key.firstIndex(where: { $0 != "_" }) else { return key }
        let last = key.lastIndex(where: { $0 != "_" })!
        let words = key[first...last].split(separator: "_")
        guard words.count > 1 else { return key }
        let joined = words[0].lowercased() + words.dropFirst().map(capitalized).joined()
        return String(key[..<first]) + joined + String(key[key.index(after: last)...])
    }

    /// Foundation's `capitalized` on one word: its first letter upper-cased, the rest lower-cased.
    private static func capitalized(_ word: Substring) -> String {
        guard let head = word.first else { return "" }
        return head.uppercased() + word.dropFirst().lowercased()
    }
}

extension JSONValue {
    /// This value with every object key (at any depth) passed through `transform`.
    public func mappingKeys(_ transform: (String) -> String) -> JSONValue {
        switch self {
        case .array(let elements): return .array(elements.map { $0.mappingKeys(transform) })
        case .object(let object):
            return .object(JSONObject(object.members.map { (transform($0.key), $0.value.mappingKeys(transform)) }))
        default: return self
        }
    }

    /// Every object's members ordered by key, at any depth (JSONEncoder's `.sortedKeys`).
    public func sortingKeys() -> JSONValue {
        switch self {
        case .array(let elements): return .array(elements.map { $0.sortingKeys() })
        case .object(let object):
            let members = object.members.sorted { $0.key < $1.key }
            return .object(JSONObject(members.map { ($0.key, $0.value.sortingKeys()) }))
        default: return self
        }
    }
}
