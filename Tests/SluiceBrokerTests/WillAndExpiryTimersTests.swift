import MQTTCore
import Testing

@testable import SluiceBroker

// The due-time index `tick` consults; the broker-level behaviour of wills and expiry is in BrokerTests.

@Suite struct WillAndExpiryTimersTests {
    typealias Due = WillAndExpiryTimers.Due

    @Test func nothingIsDueBeforeItsTime() {
        var timers = WillAndExpiryTimers()
        #expect(timers.takeDue(now: 0).isEmpty)
        timers.setWill("a", at: 100)
        timers.setExpiry("a", at: 200)
        #expect(timers.takeDue(now: 99).isEmpty)
        #expect(timers.count == 2)
    }

    @Test func dueTimersComeOutOnceInTimeOrderWillFirst() {
        var timers = WillAndExpiryTimers()
        timers.setExpiry("b", at: 150)
        timers.setWill("a", at: 150)
        timers.setExpiry("a", at: 150)
        timers.setWill("c", at: 120)
        timers.setExpiry("c", at: 400)
        #expect(
            timers.takeDue(now: 150) == [
                Due(clientID: "c", kind: .will, at: 120),
                Due(clientID: "a", kind: .will, at: 150),
                Due(clientID: "a", kind: .sessionExpiry, at: 150),
                Due(clientID: "b", kind: .sessionExpiry, at: 150),
            ]
        )
        #expect(timers.takeDue(now: 399).isEmpty, "taken once")
        #expect(timers.takeDue(now: 1_000) == [Due(clientID: "c", kind: .sessionExpiry, at: 400)])
        #expect(timers.count == 0)
    }

    @Test func cancellingStopsBothTimers() {
        var timers = WillAndExpiryTimers()
        timers.setWill("a", at: 10)
        timers.setExpiry("a", at: 20)
        timers.setExpiry("b", at: 20)
        timers.cancel("a")
        #expect(timers.takeDue(now: 100) == [Due(clientID: "b", kind: .sessionExpiry, at: 20)])
    }

    @Test func settingAgainReplacesAndNilClears() {
        var timers = WillAndExpiryTimers()
        timers.setExpiry("a", at: 10)
        timers.setExpiry("a", at: 50)
        timers.setWill("b", at: 10)
        timers.setWill("b", at: nil)
        #expect(timers.takeDue(now: 49).isEmpty)
        #expect(timers.takeDue(now: 50) == [Due(clientID: "a", kind: .sessionExpiry, at: 50)])
    }

    @Test func aLaterTimerStillFiresAfterAnEarlierOneWasCancelled() {
        // The earliest due time is a lower bound: a cancelled early timer must not hide later ones.
        var timers = WillAndExpiryTimers()
        timers.setWill("early", at: 10)
        timers.setWill("late", at: 30)
        timers.cancel("early")
        #expect(timers.takeDue(now: 20).isEmpty)
        #expect(timers.takeDue(now: 30) == [Due(clientID: "late", kind: .will, at: 30)])
    }
}

@Suite struct SessionExpiryTimerTests {
    @Test func aRestoredSessionExpiresOnTime() {
        let h = Harness()
        h.broker.tracksChanges = true
        var properties = Properties()
        properties.sessionExpiryInterval = 5
        h.connect(1, "keeper", properties: properties)
        h.closed(1)
        var saved = SavedTables()
        h.save(into: &saved)
        // Offline since before the restart: its expiry counts from the restore (time 0).
        let (restarted, problems) = saved.restored(wallClockOffset: 0)
        #expect(problems.isEmpty)
        #expect(restarted.broker.sessionCount == 1)
        restarted.advance(seconds: 4.9)
        #expect(restarted.broker.sessionCount == 1)
        restarted.advance(seconds: 0.2)
        #expect(restarted.broker.sessionCount == 0)
        #expect(restarted.broker.stats.clientsExpired == 1)
    }

    @Test func aSessionThatReconnectsAndLeavesAgainExpiresFromTheSecondDeparture() {
        let h = Harness()
        var properties = Properties()
        properties.sessionExpiryInterval = 2
        h.connect(1, "c", properties: properties)
        h.closed(1)
        h.advance(seconds: 1.5)
        h.connect(2, "c", clean: false, properties: properties)
        h.advance(seconds: 1)  // past the first departure's expiry, but connected
        #expect(h.broker.sessionCount == 1)
        h.closed(2)
        h.advance(seconds: 1.9)
        #expect(h.broker.sessionCount == 1)
        h.advance(seconds: 0.2)
        #expect(h.broker.sessionCount == 0)
        #expect(h.broker.stats.clientsExpired == 1)
    }

    @Test func aSessionThatNeverExpiresHasNoTimer() {
        let h = Harness()
        var properties = Properties()
        properties.sessionExpiryInterval = UInt32.max
        h.connect(1, "c", properties: properties)
        h.closed(1)
        #expect(h.broker.timers.count == 0)
        h.advance(seconds: 1_000_000)
        #expect(h.broker.sessionCount == 1)
    }
}
