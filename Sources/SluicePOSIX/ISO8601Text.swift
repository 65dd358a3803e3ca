/// ISO 8601 / RFC 3339 time stamps in UTC, written by hand (FoundationEssentials' `formatted(.iso8601)`
/// without Foundation): `2026-12-05T20:07:30Z`.
public enum ISO8601Text {
    /// `time` (whole seconds since the Unix epoch) as `YYYY-MM-DDTHH:MM:SSZ`. Years before 1 or after 9999
    /// are clamped to those years' first or last second, which no clock of a running gateway reaches.
    public static func utc(_ time: Int64) -> String {
        let first: Int64 = -62_135_596_800  // 0001-01-01T00:00:00Z
        let last: Int64 = 253_402_300_799  // 9999-12-31T23:59:59Z
        let seconds = min(max(time, first), last)
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = civil(daysSince1970: days)
        return digits(year, 4) + "-" + digits(month, 2) + "-" + digits(day, 2) + "T"
            + digits(secondOfDay / 3600, 2) + ":" + digits(secondOfDay / 60 % 60, 2) + ":"
            + digits(secondOfDay % 60, 2) + "Z"
    }

    /// `milliseconds` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.sssZ`, always three fraction digits
    /// (Foundation's `ISO8601FormatStyle(includingFractionalSeconds: true)`, which truncates as this does).
    public static func utc(milliseconds: Int64) -> String {
        var (seconds, fraction) = milliseconds.quotientAndRemainder(dividingBy: 1000)
        if fraction < 0 {  // before 1970: the fraction counts forward from the earlier second
            seconds -= 1
            fraction += 1000
        }
        return utc(seconds).dropLast() + "." + digits(fraction, 3) + "Z"
    }

    /// The proleptic Gregorian date of a day count from 1970-01-01 (H. Hinnant's `civil_from_days`).
    static func civil(daysSince1970 days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = days + 719_468  // from 0000-03-01, so that leap days end each 400-year era's years
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153  // 0 = March
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func digits(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
}
