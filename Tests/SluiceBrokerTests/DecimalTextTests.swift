import Foundation
import Testing

@testable import SluiceBroker

/// `DecimalText.fixed` writes what `String(format: "%.Nf")` wrote ($SYS load averages, store alarms).
@Suite struct DecimalTextTests {
    @Test(arguments: [
        (0.125, 2, "0.12"),  // exactly half: printf rounds to even
        (1.005, 2, "1.00"),  // 1.00499999… in binary
        (2.675, 2, "2.67"),
        (0, 2, "0.00"),
        (-0.0, 2, "-0.00"),
        (1536.0 / 1024, 1, "1.5"),
        (12_345.678, 1, "12345.7"),
        (1e20, 2, "100000000000000000000.00"),
        (Double.infinity, 2, "inf"),
        (Double.nan, 1, "nan"),
    ])
    func matchesPrintf(value: Double, digits: Int, expected: String) {
        #expect(DecimalText.fixed(value, digits: digits) == expected)
    }

    @Test func theLargestDoubleFitsTheBuffer() {
        let text = DecimalText.fixed(Double.greatestFiniteMagnitude, digits: 2)
        #expect(text.count == 312)
        #expect(text.hasPrefix("17976931348623157") && text.hasSuffix(".00"))
    }

    @Test func agreesWithFoundationOnRandomValues() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let value = Double.random(in: -1e6...1e6, using: &generator) / Double([1, 7, 1000][Int.random(in: 0..<3)])
            for digits in [1, 2] {
                #expect(DecimalText.fixed(value, digits: digits) == String(format: "%.\(digits)f", value))
            }
        }
    }
}
