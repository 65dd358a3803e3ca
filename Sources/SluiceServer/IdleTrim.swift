#if canImport(Glibc)
    import Glibc
#endif

/// Note on giving memory back after a burst: glibc keeps freed heap pages mapped (only the top of the
/// main arena shrinks by itself, and Swift/NIO allocations are scattered across arenas), so a broker
/// that peaked under a burst kept that anonymous memory with no client connected. `malloc_trim(0)`
/// returns every free page of every arena to the kernel. It walks the heap, so it runs only once the
/// broker has gone quiet after some activity, and at most every `minimumInterval`. A quiet broker gets
/// one follow-up trim `minimumInterval` later: a closed connection's buffers are freed on its own event
/// loop, which may be just after the first trim, and nothing else would return them.
struct IdleTrim: Sendable {
    /// How long the activity counter must stay still before the broker counts as idle.
    var quietPeriod: Duration
    /// The least time between two trims.
    var minimumInterval: Duration

    init(quietPeriod: Duration = .seconds(1), minimumInterval: Duration = .seconds(3)) {
        self.quietPeriod = quietPeriod
        self.minimumInterval = minimumInterval
    }

    private var lastActivity: Int?
    private var quietSince: Duration = .zero
    /// Whether anything happened since the last trim (an idle broker is never trimmed twice).
    private var activeSinceTrim = false
    /// The last trim followed activity: one more is due once `minimumInterval` has passed in quiet.
    private var followUpDue = false
    private var lastTrim: Duration?

    /// `activity`: any counter that moves with work (messages, connections); `now`: monotonic time.
    /// True when the caller should trim now.
    mutating func shouldTrim(activity: Int, now: Duration) -> Bool {
        if activity != lastActivity {
            lastActivity = activity
            quietSince = now
            activeSinceTrim = true
            return false
        }
        guard activeSinceTrim || followUpDue, now - quietSince >= quietPeriod else { return false }
        if let lastTrim, now - lastTrim < minimumInterval { return false }
        followUpDue = activeSinceTrim
        activeSinceTrim = false
        lastTrim = now
        return true
    }

    /// Returns free heap pages to the kernel; false where the C library has no `malloc_trim`.
    @discardableResult
    static func releaseFreeHeap() -> Bool {
        guard let trim = mallocTrim else { return false }
        _ = trim(0)
        return true
    }

    /// The size at and above which glibc serves an allocation from its own `mmap` (given back by `free`)
    /// and keeps at most this much free at the top of a heap (`fixHeapThresholds`).
    static let heapThreshold: Int32 = 1 << 20

    /// Fixes glibc's mmap and trim thresholds at `heapThreshold`. By default glibc raises both after a
    /// large block is freed (a subscription tree's node array: up to 32 MiB mmap, 64 MiB trim), and
    /// `malloc_trim` never shrinks the top of a thread's arena, which is where the broker loop
    /// allocates: freed subscription-tree storage then stayed resident (+10–18 MiB after some rounds
    /// of 50,000 filters, none after others). Fixed thresholds, as with `M_TRIM_THRESHOLD` set, keep
    /// `free` returning the top of every arena. Call once, at start. False where glibc has no `mallopt`.
    @discardableResult
    static func fixHeapThresholds() -> Bool {
        guard let mallopt = mallopt else { return false }
        let trimThreshold: Int32 = -1  // M_TRIM_THRESHOLD (malloc.h)
        let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD
        return mallopt(trimThreshold, heapThreshold) == 1 && mallopt(mmapThreshold, heapThreshold) == 1
    }

    /// glibc's `malloc_trim` and `mallopt`, looked up at run time: `<malloc.h>` is not part of the Glibc module.
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = glibcFunction("malloc_trim")
    private static let mallopt: (@convention(c) (Int32, Int32) -> Int32)? = glibcFunction("mallopt")

    private static func glibcFunction<Function>(_ name: String) -> Function? {
        #if canImport(Glibc)
            guard let symbol = dlsym(dlopen(nil, RTLD_NOW), name) else { return nil }
            return unsafeBitCast(symbol, to: Function.self)
        #else
            return nil
        #endif
    }
}
