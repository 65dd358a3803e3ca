import Testing

@testable import SluiceStore

/// The Foundation-free replacements in Threading.swift (issue 17, item 5).
@Suite struct ThreadingTests {
    @Test(arguments: [
        ("dir", "sluice.db", "dir/sluice.db"),
        ("dir/", "sluice.db", "dir/sluice.db"),
        ("/", "sluice.db", "/sluice.db"),
        ("", "sluice.db", "sluice.db"),
        ("/var/lib/sluice", "sluice.lock", "/var/lib/sluice/sluice.lock"),
    ])
    func appendingAComponentMatchesNSString(directory: String, component: String, expected: String) {
        #expect(PathText.appending(component, to: directory) == expected)
    }

    @Test(arguments: [
        ("/var/lib/sluice/sluice.db", "/var/lib/sluice"),
        ("/var/lib/sluice/", "/var/lib"),
        ("/sluice.db", "/"),
        ("/", "/"),
        ("sluice.db", ""),
        ("", ""),
        ("data/sluice.db", "data"),
        ("a//b", "a"),
    ])
    func theParentMatchesNSString(path: String, expected: String) {
        #expect(PathText.parent(of: path) == expected)
    }

    @Test func aTimedWaitEndsAtItsDeadlineOnTheMonotonicClock() {
        let condition = ConditionMutex()
        let started = ContinuousClock.now
        let signalled = condition.withLock { condition.wait(until: ConditionMutex.deadline(after: .milliseconds(50))) }
        #expect(!signalled)
        #expect(ContinuousClock.now - started >= .milliseconds(50))
    }

    @Test func aDeadlineCarriesNanosecondsIntoSeconds() {
        let deadline = ConditionMutex.deadline(after: .milliseconds(1_999))
        #expect(deadline.tv_nsec >= 0 && deadline.tv_nsec < 1_000_000_000)
    }

    @Test func aNamedThreadRunsItsBodyAndKnowsItsOwnThread() {
        let thread = NamedThread()
        let done = ConditionMutex()
        nonisolated(unsafe) var sawItself: Bool? = nil
        done.lock()
        thread.start(name: "sluice-test-thread-with-a-long-name") {
            // `isCurrent` needs the handle `start` records after pthread_create: wait for it.
            while !thread.hasHandle {}
            let mine = thread.isCurrent
            done.withLock {
                sawItself = mine
                done.signal()
            }
        }
        while sawItself == nil { done.wait() }
        done.unlock()
        #expect(sawItself == true)
        #expect(!thread.isCurrent)
    }
}
