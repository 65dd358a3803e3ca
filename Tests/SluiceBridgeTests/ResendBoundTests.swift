import Testing

@testable import SluiceBridge

@Suite struct ResendBoundTests {
    @Test func aWindowOfOneSendsOnWhileRemovalsWait() {
        let bound = ResendBound(window: 1)
        #expect(bound.bound == ResendBound.minimumBound)
        // The PUBACK of the one message in flight arrived; its removal has not committed: the next goes.
        #expect(bound.room(inflight: 0, unremoved: 1) == 1)
        #expect(bound.room(inflight: 1, unremoved: 0) == 0)  // the window itself still holds
        // Up to the bound, counting the one about to be sent.
        #expect(bound.room(inflight: 0, unremoved: ResendBound.minimumBound - 1) == 1)
        #expect(bound.room(inflight: 0, unremoved: ResendBound.minimumBound) == 0)
        #expect(bound.room(inflight: 1, unremoved: ResendBound.minimumBound - 1) == 0)
    }

    @Test func removalsWaitForAnAppendOnlyWhileTheyHoldNobodyBack() {
        let bound = ResendBound(window: 1)
        let half = ResendBound.minimumBound / 2
        #expect(bound.removesLazily(inflight: 1, unremoved: 1))
        #expect(bound.removesLazily(inflight: 0, unremoved: half - 1))
        #expect(!bound.removesLazily(inflight: 0, unremoved: half))
        #expect(!bound.removesLazily(inflight: 1, unremoved: ResendBound.minimumBound - 1))
    }

    @Test func windowsAtOrAboveTheFloorKeepTheOldRule() {
        // In flight + unremoved ≤ window, removals eager from half the window: what the crash tests at
        // windows 50 and 100 bound duplicates by.
        for window in [ResendBound.minimumBound, 50, 100, 1000] {
            let bound = ResendBound(window: window)
            #expect(bound.bound == window)
            #expect(bound.room(inflight: 10, unremoved: 5) == window - 15)
            #expect(bound.room(inflight: window - 1, unremoved: 1) == 0)
            #expect(bound.room(inflight: 0, unremoved: window) == 0)
            #expect(bound.removesLazily(inflight: 0, unremoved: window / 2 - 1))
            #expect(!bound.removesLazily(inflight: 0, unremoved: (window + 1) / 2))
            #expect(!bound.removesLazily(inflight: window - 1, unremoved: 1))
        }
    }

    @Test func neverNegativeAndOfflineIsAWindowOfOne() {
        let bound = ResendBound(window: 0)  // offline: the link reports no window
        #expect(bound.window == 1)
        #expect(bound.room(inflight: 5, unremoved: 100) == 0)
        #expect(ResendBound(window: 4).room(inflight: 4, unremoved: 40) == 0)
    }
}
