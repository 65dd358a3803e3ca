/// How full the store is, for `/metrics`: the bytes its data occupies against `store_max_size`, and the
/// filesystem it lives on (the free-space guard's view).
public struct StoreUsage: Sendable, Hashable {
    /// Bytes of pages in use (the map's high-water mark less LMDB's free list).
    public var usedBytes: Int
    /// The current map size (it grows by doubling up to `maxBytes`).
    public var mapBytes: Int
    /// `store_max_size`: the ceiling the map may grow to.
    public var maxBytes: Int
    /// The store's filesystem, nil if statvfs failed.
    public var filesystem: FilesystemSpace?
}

extension Store {
    /// Reads the usage in a read transaction (walks LMDB's free list: call per scrape, not per message).
    public func usage() throws(StoreError) -> StoreUsage {
        let pages = try environment.spacePages()
        let pageBytes = pages.total > 0 ? environment.mapSize / pages.total : 0
        return StoreUsage(
            usedBytes: (pages.total - pages.available) * pageBytes,
            mapBytes: environment.mapSize,
            maxBytes: environment.maxMapSize,
            filesystem: FilesystemSpace.of(StorageSpace.directory(of: environment.path))
        )
    }
}
