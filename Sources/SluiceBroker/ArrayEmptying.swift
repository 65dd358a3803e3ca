extension Array {
    /// Empties the array and keeps its room. `removeAll(keepingCapacity: true)` is a generic range
    /// replacement, about 300 instructions even for one element: dearer than popping the one or two
    /// entries of a per-packet buffer (the broker's match, the host's actions).
    /// (`while let`, not `popLast() != nil`: the comparison destroys the final nil through the generic
    /// witness, which for a large enum costs as much as an element.)
    @inlinable
    package mutating func emptyKeepingCapacity() {
        while let _ = popLast() {}
    }
}
