extension Dictionary {
    /// Reads the value at `index` where it lies. `values[index]`'s getter returns a copy of the whole
    /// value (a retain and a release of every reference in it: a client id, a username, a box) even to
    /// read one integer of it; `body` gets the stored value itself, by the in-place accessor.
    mutating func read<Result>(at index: Index, _ body: (inout Value) -> Result) -> Result {
        body(&values[index])
    }
}
