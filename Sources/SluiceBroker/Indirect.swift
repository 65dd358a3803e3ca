/// Keeps a rarely set, large value (a will message) out of line: the property is one pointer,
/// so the struct holding it — a slot in the broker's per-client dictionaries, which are up to
/// ~2.7 slots per entry — stays small. A will is ~110 bytes inline; boxed, a client without one
/// pays 8 (issue 17, RSS per idle connection). Value semantics: the box is immutable, and a set
/// replaces it.
@propertyWrapper
struct Indirect<Value: Sendable>: Sendable {
    private final class Box: Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }

    private var box: Box?

    init(wrappedValue: Value?) {
        box = wrappedValue.map(Box.init)
    }

    var wrappedValue: Value? {
        get { box?.value }
        set { box = newValue.map(Box.init) }
    }
}
