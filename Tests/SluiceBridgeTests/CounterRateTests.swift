import SluiceBridge
import Testing

@Suite struct CounterRateTests {
    @Test func deltaOverSeconds() {
        #expect(CounterRate.perSecond(from: 100, to: 700, seconds: 60) == 10)
        #expect(CounterRate.perSecond(from: 5, to: 5, seconds: 1) == 0)
        #expect(CounterRate.perSecond(from: 0, to: 1, seconds: 0.25) == 4)
    }

    @Test func counterResetOrWrapIsZero() {
        #expect(CounterRate.perSecond(from: 700, to: 100, seconds: 60) == 0)
        #expect(CounterRate.perSecond(from: .max, to: 3, seconds: 1) == 0)
    }

    @Test(arguments: [0, -1, Double.nan, Double.infinity])
    func noUsableIntervalIsNil(seconds: Double) {
        #expect(CounterRate.perSecond(from: 0, to: 10, seconds: seconds) == nil)
    }
}
