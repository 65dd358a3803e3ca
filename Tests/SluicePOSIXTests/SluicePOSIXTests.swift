import Glibc
import Testing

@testable import SluicePOSIX

@Suite struct ISO8601TextTests {
    @Test func knownInstants() {
        #expect(ISO8601Text.utc(0) == "1970-01-01T00:00:00Z")
        #expect(ISO8601Text.utc(1_796_501_250) == "2026-12-05T20:07:30Z")
        #expect(ISO8601Text.utc(951_782_400) == "2000-02-29T00:00:00Z")  // leap day of a 400-year leap year
        #expect(ISO8601Text.utc(4_107_542_399) == "2100-02-28T23:59:59Z")  // 2100 is not a leap year
        #expect(ISO8601Text.utc(4_107_542_400) == "2100-03-01T00:00:00Z")
        #expect(ISO8601Text.utc(-1) == "1969-12-31T23:59:59Z")
        #expect(ISO8601Text.utc(-86_400) == "1969-12-31T00:00:00Z")
    }

    @Test func milliseconds() {
        // Values checked against Foundation's ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt).
        #expect(ISO8601Text.utc(milliseconds: 1_733_450_000_123) == "2024-12-06T01:53:20.123Z")
        #expect(ISO8601Text.utc(milliseconds: 1_733_450_000_999) == "2024-12-06T01:53:20.999Z")
        #expect(ISO8601Text.utc(milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(ISO8601Text.utc(milliseconds: 7) == "1970-01-01T00:00:00.007Z")
        #expect(ISO8601Text.utc(milliseconds: -1) == "1969-12-31T23:59:59.999Z")
        #expect(ISO8601Text.utc(milliseconds: .min).hasPrefix("0001-01-01T00:00:00."))
        #expect(ISO8601Text.utc(milliseconds: .max).hasPrefix("9999-12-31T23:59:59."))
        let now = WallClock.millisecondsSince1970()
        #expect(abs(Double(now) / 1000 - WallClock.secondsSince1970()) < 5)
    }

    @Test func wallInstant() {
        // Foundation's Date(timeIntervalSince1970: 1733450000.9999).formatted(.iso8601) is this: rounded down.
        #expect(WallInstant(timeIntervalSince1970: 1_733_450_000.9999).iso8601 == "2024-12-06T01:53:20Z")
        #expect(WallInstant(timeIntervalSince1970: -0.5).iso8601 == "1969-12-31T23:59:59Z")
        #expect(WallInstant(timeIntervalSince1970: .infinity).iso8601 == "1970-01-01T00:00:00Z")
        #expect(WallInstant(timeIntervalSince1970: 1e300).iso8601 == "9999-12-31T23:59:59Z")
        let earlier = WallInstant(timeIntervalSince1970: 10)
        let later = WallInstant(timeIntervalSince1970: 12.5)
        #expect(later.timeIntervalSince(earlier) == 2.5)
        #expect(earlier < later)
        #expect(abs(WallInstant().timeIntervalSince1970 - WallClock.secondsSince1970()) < 5)
        #expect(WallInstant(timeIntervalSince1970: 1_733_450_000.9999).description == "2024-12-06 01:53:20 +0000")
        #expect(!SystemInfo.hostName().isEmpty)
        setenv("SLUICE_POSIX_TEST", "a=b", 1)
        #expect(SystemInfo.environment()["SLUICE_POSIX_TEST"] == "a=b")
        #expect(SystemInfo.environment("SLUICE_POSIX_TEST") == "a=b")
        unsetenv("SLUICE_POSIX_TEST")
        #expect(SystemInfo.environment("SLUICE_POSIX_TEST") == nil)
        #expect(SystemInfo.environment()["SLUICE_POSIX_TEST"] == nil)
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, 255)
        #expect(SystemInfo.hostName() == String(cString: name))
    }

    @Test func outOfRangeYearsAreClamped() {
        #expect(ISO8601Text.utc(.max) == "9999-12-31T23:59:59Z")
        #expect(ISO8601Text.utc(.min) == "0001-01-01T00:00:00Z")
    }

    /// Against glibc's gmtime_r + strftime over a spread of instants from 1901 to 2400.
    @Test func agreesWithGmtime() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<20_000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let seconds = Int64(state >> 24) % 15_000_000_000 - 2_147_483_648
            var time = time_t(seconds)
            var parts = tm()
            #expect(gmtime_r(&time, &parts) != nil)
            var buffer = [CChar](repeating: 0, count: 32)
            let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
            let expected = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            #expect(ISO8601Text.utc(seconds) == expected, "\(seconds)")
        }
    }
}

@Suite struct FileSystemTests {
    /// A fresh directory under /tmp, removed with its files by `cleanUp`.
    private func temporaryDirectory() -> String {
        var template = Array("/tmp/sluice-posix-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        return path
    }

    private func write(_ bytes: [UInt8], to path: String) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(descriptor >= 0)
        _ = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
    }

    private func cleanUp(_ directory: String, files: [String]) {
        for file in files { unlink(directory + "/" + file) }
        rmdir(directory)
    }

    @Test func readsTextAndBytes() throws {
        let directory = temporaryDirectory()
        defer { cleanUp(directory, files: ["a.conf", "big"]) }
        write(Array("listener 1883\nπ\n".utf8), to: directory + "/a.conf")
        #expect(try FileSystem.readText(directory + "/a.conf") == "listener 1883\nπ\n")
        // Larger than one read chunk: every byte arrives, in order.
        let big = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        write(big, to: directory + "/big")
        #expect(try FileSystem.readBytes(directory + "/big") == big)
    }

    @Test func createsWritesAndRemoves() throws {
        let directory = temporaryDirectory()
        defer {
            unlink(directory + "/a/b/c/file")
            rmdir(directory + "/a/b/c")
            rmdir(directory + "/a/b")
            rmdir(directory + "/a")
            rmdir(directory)
        }
        try FileSystem.createDirectory(directory + "/a/b/c/")
        try FileSystem.createDirectory(directory + "/a/b/c")  // already there: fine
        #expect(FileSystem.kind(directory + "/a/b/c") == .directory)
        try FileSystem.writeFile(directory + "/a/b/c/file", Array("one\n".utf8))
        try FileSystem.writeFile(directory + "/a/b/c/file", Array("two".utf8))  // replaced whole
        #expect(try FileSystem.readText(directory + "/a/b/c/file") == "two")
        #expect(try FileSystem.directoryEntries(directory + "/a/b/c") == ["file"])  // no temporary left
        // A file in the way of a directory, a directory in the way of a file, a missing parent.
        #expect(throws: FileFailure(path: directory + "/a/b/c/file/d", code: ENOTDIR)) {
            try FileSystem.createDirectory(directory + "/a/b/c/file/d")
        }
        #expect(throws: FileFailure.self) { try FileSystem.writeFile(directory + "/a/b", [1]) }
        #expect(throws: FileFailure(path: directory + "/none/x", code: ENOENT)) {
            try FileSystem.writeFile(directory + "/none/x", [1])
        }
        try FileSystem.removeFile(directory + "/a/b/c/file")
        #expect(!FileSystem.exists(directory + "/a/b/c/file"))
        #expect(throws: FileFailure(path: directory + "/a/b/c/file", code: ENOENT)) {
            try FileSystem.removeFile(directory + "/a/b/c/file")
        }
        #expect(FileSystem.linkDestination("/proc/self/exe")?.hasPrefix("/") == true)
        #expect(FileSystem.linkDestination(directory) == nil)
    }

    @Test func procFilesAreReadToTheEnd() throws {
        // st_size is 0 for /proc files; the reader must not trust it.
        let stat = try FileSystem.readText("/proc/self/stat")
        #expect(stat.contains(")"))
        #expect(stat.hasSuffix("\n"))
    }

    @Test func invalidUTF8IsAnErrorNotReplaced() {
        let directory = temporaryDirectory()
        defer { cleanUp(directory, files: ["bad"]) }
        write([0x6C, 0x69, 0xFF, 0xFE, 0x0A], to: directory + "/bad")
        #expect(throws: FileFailure(path: directory + "/bad", code: 0)) { try FileSystem.readText(directory + "/bad") }
        #expect(FileFailure(path: "x", code: 0).reason == "not UTF-8 text")
        // A truncated multi-byte sequence at the end of the file.
        write([0x61, 0xCF], to: directory + "/bad")
        #expect(throws: FileFailure.self) { try FileSystem.readText(directory + "/bad") }
    }

    @Test func missingFilesAndDirectoriesCarryErrno() {
        #expect(throws: FileFailure(path: "/nonexistent/x", code: ENOENT)) {
            try FileSystem.readBytes("/nonexistent/x")
        }
        #expect(throws: FileFailure(path: "/nonexistent", code: ENOENT)) {
            try FileSystem.directoryEntries("/nonexistent")
        }
        let missing = FileFailure(path: "/nonexistent", code: ENOENT)
        #expect(missing.description == "/nonexistent: No such file or directory")
        // A directory read as a file.
        #expect(throws: FileFailure(path: "/tmp", code: EISDIR)) { try FileSystem.readBytes("/tmp") }
    }

    @Test func kindsAndEntries() throws {
        let directory = temporaryDirectory()
        defer { cleanUp(directory, files: ["one.conf", ".hidden", "link"]) }
        #expect(try FileSystem.directoryEntries(directory) == [])
        write([], to: directory + "/one.conf")
        write([], to: directory + "/.hidden")
        symlink(directory + "/gone", directory + "/link")
        #expect(try FileSystem.directoryEntries(directory).sorted() == [".hidden", "link", "one.conf"])
        #expect(FileSystem.kind(directory) == .directory)
        #expect(FileSystem.kind(directory + "/one.conf") == .file)
        #expect(FileSystem.kind("/dev/null") == .other)
        #expect(FileSystem.kind(directory + "/link") == nil)  // dangling
        #expect(FileSystem.exists(directory + "/missing") == false)
    }

    @Test func canonicalPathsResolveLinksAndMissingNames() {
        let directory = temporaryDirectory()
        defer {
            rmdir(directory + "/store")
            cleanUp(directory, files: ["alias"])
        }
        mkdir(directory + "/store", 0o700)
        symlink(directory + "/store", directory + "/alias")
        let real = FileSystem.canonicalPath(directory)  // /tmp itself may be a link
        #expect(FileSystem.canonicalPath(directory + "/alias") == real + "/store")
        #expect(FileSystem.canonicalPath(directory + "/alias/") == real + "/store")
        #expect(FileSystem.canonicalPath(directory + "/./store/../alias") == real + "/store")
        // Not created yet: the name stays behind its resolved directory.
        #expect(FileSystem.canonicalPath(directory + "/alias/sluice.db") == real + "/store/sluice.db")
        #expect(FileSystem.canonicalPath(directory + "/alias/new/sluice.db") == real + "/store/new/sluice.db")
        #expect(FileSystem.canonicalPath("/") == "/")
        // Relative to the working directory.
        let current = realpath(".", nil)!
        defer { free(current) }
        let base = String(cString: current)
        #expect(FileSystem.canonicalPath("no-such-file-here") == (base == "/" ? "" : base) + "/no-such-file-here")
    }

    @Test func wallClockIsTheRealtimeClock() {
        let before = Double(time(nil))
        let now = WallClock.secondsSince1970()
        #expect(now >= before && now < before + 2)
    }
}

@Suite struct TextSearchTests {
    @Test func findsAsTheStandardLibraryDoes() {
        let texts = ["", "a", "abcabc", "peer sent TLS alert handshake failure", "café résumé", "aaa", "SF7BW125"]
        let needles = ["", "a", "bc", "abc", "alert ", "é", "aa", "BW", "x", "abcabcd"]
        for text in texts {
            for needle in needles {
                #expect(text.containsText(needle) == text.contains(needle), "\(text) \(needle)")
                #expect(text.firstRange(ofText: needle) == text.firstRange(of: needle), "\(text) \(needle)")
                if !(text == "aaa" && needle == "aa") {  // overlapping: see below
                    #expect(text.lastRange(ofText: needle) == text.ranges(of: needle).last, "\(text) \(needle)")
                }
                if !needle.isEmpty {
                    #expect(text.replacingText(needle, with: "<>") == text.replacing(needle, with: "<>"))
                }
            }
        }
        #expect("a|b||c".replacingText("|", with: "\\|") == "a\\|b\\|\\|c")
        #expect("aaaa".replacingText("aa", with: "a") == "aa")  // not overlapping, left to right
        #expect("x".replacingText("", with: "y") == "x")
        // The occurrence that starts last, where ranges(of:) gives the last of non-overlapping ones.
        let aaa = "aaa"
        #expect(aaa.lastRange(ofText: "aa") == aaa.index(after: aaa.startIndex)..<aaa.endIndex)
    }
}
