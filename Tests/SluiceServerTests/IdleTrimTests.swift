import Testing

@testable import SluiceServer

/// When the broker gives free heap back to the kernel (issue 17, item 7).
@Suite struct IdleTrimTests {
    /// Feeds `(activity, milliseconds)` ticks and returns at which ticks a trim was due.
    private func trims(_ ticks: [(activity: Int, at: Int64)]) -> [Int64] {
        var trim = IdleTrim(quietPeriod: .seconds(1), minimumInterval: .seconds(5))
        return ticks.filter { trim.shouldTrim(activity: $0.activity, now: .milliseconds($0.at)) }.map(\.at)
    }

    @Test func trimsWhenActivityGoesQuietAndOnceMoreLater() {
        // First sight counts as activity; quiet for a second: trim; one follow-up after the minimum
        // interval (buffers freed just after the first); then idle: nothing new to give back.
        let ticks: [(activity: Int, at: Int64)] = [
            (10, 0), (10, 999), (10, 1_000), (10, 2_000), (10, 5_999), (10, 6_000), (10, 11_000), (10, 60_000),
        ]
        #expect(trims(ticks) == [1_000, 6_000])
    }

    @Test func neverTrimsWhileBusy() {
        #expect(trims((0..<100).map { (activity: $0, at: Int64($0) * 250) }).isEmpty)
    }

    @Test func trimsAreAtLeastTheMinimumIntervalApart() {
        // A short burst at 2 s: quiet from 3 s, but the next trim waits until 5 s after the first; its
        // follow-up 5 s after that.
        #expect(
            trims([
                (1, 0), (1, 1_000), (2, 2_000), (2, 3_000), (2, 5_999), (2, 6_000), (2, 7_000), (2, 10_999),
                (2, 11_000), (2, 30_000),
            ]) == [1_000, 6_000, 11_000]
        )
    }

    /// The symbol lookup must find glibc's function: without it nothing is ever given back.
    @Test func glibcsMallocTrimIsFound() {
        #expect(IdleTrim.releaseFreeHeap())
    }

    /// Likewise `mallopt`, and glibc must accept both thresholds.
    @Test func glibcTakesTheFixedHeapThresholds() {
        #expect(IdleTrim.fixHeapThresholds())
    }
}
