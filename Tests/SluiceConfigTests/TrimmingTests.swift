import Foundation
import Testing

@testable import SluiceConfig

/// `trimmingBlanks()` / `trimmingBlanksAndNewlines()` trim what Foundation's `.whitespaces` /
/// `.whitespacesAndNewlines` did (issue 17, item 5: no full Foundation).
@Suite struct TrimmingTests {
    @Test(arguments: [
        ("  key value \t", "key value"),
        ("\u{00A0}\u{2003}key\u{3000}", "key"),  // no-break, em and ideographic spaces are space separators
        ("key value\r", "key value\r"),  // a carriage return is not blank
        ("\nkey\n", "\nkey\n"),
        ("", ""),
        (" \t ", ""),
        ("a b", "a b"),
    ])
    func blanks(text: String, expected: String) {
        #expect(text.trimmingBlanks() == expected)
    }

    @Test(arguments: [
        ("\r\n 1234 \n", "1234"),
        ("\u{2028}x\u{85}", "x"),
        ("\u{000B}\u{000C}", ""),
        ("a\nb", "a\nb"),
    ])
    func blanksAndNewlines(text: String, expected: String) {
        #expect(text.trimmingBlanksAndNewlines() == expected)
    }

    @Test func combiningMarksAfterABlankStay() {
        // Trimming works on scalars, as Foundation's did: the mark after the trimmed space is kept.
        #expect(" \u{301}x".trimmingBlanks() == "\u{301}x")
    }

    @Test func agreesWithFoundation() {
        let pieces = [
            " ", "\t", "\n", "\r", "\u{00A0}", "\u{2028}", "\u{85}", "\u{200B}", "a", "é", "e\u{301}", "\u{3000}", "#",
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let text = (0..<Int.random(in: 0...8, using: &generator)).map { _ in
                pieces.randomElement(using: &generator)!
            }.joined()
            #expect(text.trimmingBlanks() == text.trimmingCharacters(in: .whitespaces))
            #expect(text.trimmingBlanksAndNewlines() == text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }
}
