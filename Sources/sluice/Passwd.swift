import ArgumentParser
import SluiceAuth
import SluiceConfig
import SluicePOSIX

#if canImport(Glibc)
    import Glibc
#endif

/// `sluice passwd`: manage a password file the way `mosquitto_passwd` (2.0) does, writing `$7$` PBKDF2-SHA512 lines
/// that Mosquitto reads too.
struct Passwd: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add, update or delete a user in a password file (mosquitto_passwd compatible).",
        discussion: """
            sluice passwd [-c] FILE USER            prompt for the password (twice, without echo)
            sluice passwd [-c] -b FILE USER PASSWORD
            sluice passwd -D FILE USER
            Other users' lines and comments are kept. The file is replaced atomically; an existing file keeps its
            mode and owner (as mosquitto_passwd does), a new one is created with mode 0600.
            """
    )

    @Flag(name: .customShort("c"), help: "Create a new password file, overwriting an existing one.")
    var create = false

    @Flag(name: .customShort("b"), help: "Batch mode: take the password from the command line.")
    var batch = false

    @Flag(name: .customShort("D"), help: "Delete the user instead of adding or updating it.")
    var delete = false

    @Argument(help: "The password file.")
    var file: String

    @Argument(help: "The username.")
    var username: String

    @Argument(help: "The password (with -b only).")
    var password: String?

    func validate() throws {
        if create && delete { throw failure("-c and -D cannot be used together.") }
        if batch && delete { throw failure("-b and -D cannot be used together.") }
        if batch && password == nil { throw failure("-b needs a password after the username.") }
        if !batch && password != nil { throw failure("a password on the command line needs -b.") }
        if username.isEmpty { throw failure("the username must not be empty.") }
        if username.contains(":") { throw failure("the username must not contain the ':' character.") }
        if username.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw failure("the username must not contain control characters.")
        }
        if username.first == "#" || username.first == " " || username.last == " " {
            throw failure("the username must not start with '#' or start or end with a space.")
        }
    }

    func run() throws {
        do {
            var lines: [String] = []
            if !create {
                guard FileSystem.exists(file) else {
                    throw PasswdError("\(file): no such file (use -c to create it)")
                }
                let text: String
                do {
                    text = try FileSystem.readText(file)
                } catch {
                    throw PasswdError("\(file): cannot read: \(fileErrorText(error))")
                }
                // Refuse to rewrite a file we cannot fully understand (the error names the line, never a hash).
                _ = try PasswordFile.parse(text, fileName: file)
                lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                if lines.last == "" { lines.removeLast() }
            }

            let isThisUser = { (line: String) -> Bool in
                guard let colon = line.firstIndex(of: ":") else { return false }
                return line[..<colon].trimmingBlanks() == username
            }

            if delete {
                let kept = lines.filter { !isThisUser($0) }
                if kept.count == lines.count { throw PasswdError("user \(username) not found in \(file)") }
                try writeAtomically(kept, to: file)
                return
            }

            let secret = try password ?? promptTwice()
            let newLine = try PasswordFile.hashLine(username: username, password: secret)
            var replaced = false
            var updated: [String] = []
            for line in lines {
                if isThisUser(line) {
                    if !replaced { updated.append(newLine) }  // first occurrence updated in place, duplicates dropped
                    replaced = true
                } else {
                    updated.append(line)
                }
            }
            if !replaced { updated.append(newLine) }
            try writeAtomically(updated, to: file)
        } catch let error as PasswdError {
            throw failure(error.message)
        } catch let error as AuthError {
            throw failure("\(error)")
        } catch let error as LibCryptoUnavailable {
            throw failure("\(error)")
        }
    }

    /// Reads the password twice from the terminal without echo.
    private func promptTwice() throws -> String {
        let first = try Terminal.readSecret(prompt: "Password: ")
        let second = try Terminal.readSecret(prompt: "Reenter password: ")
        guard first == second else { throw PasswdError("passwords do not match") }
        guard !first.isEmpty else { throw PasswdError("empty password") }
        return first
    }

    /// Writes a temporary file next to `path`, flushes it, and renames it over `path`. An existing file's mode and owner
    /// carry over, so a `root:sluice 0640` file stays readable by the service after an update; a new file gets 0600.
    private func writeAtomically(_ lines: [String], to path: String) throws {
        let text = lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
        var template = Array((path + ".tmp.XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw PasswdError("\(path): cannot create a temporary file: \(lastError())") }
        let tempPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var closed = false
        defer {
            if !closed { close(fd) }
        }
        do {
            var existing = stat()
            let exists = stat(path, &existing) == 0
            if exists {
                guard fchown(fd, existing.st_uid, existing.st_gid) == 0 || geteuid() != 0 else {
                    throw PasswdError("\(tempPath): chown: \(lastError())")
                }
            }
            let mode = exists ? existing.st_mode & 0o7777 : 0o600
            guard fchmod(fd, mode) == 0 else { throw PasswdError("\(tempPath): chmod: \(lastError())") }
            let bytes = Array(text.utf8)
            var written = 0
            while written < bytes.count {
                let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw PasswdError("\(tempPath): write: \(lastError())")
                }
                written += n
            }
            guard fsync(fd) == 0 else { throw PasswdError("\(tempPath): fsync: \(lastError())") }
            closed = true
            guard close(fd) == 0 else { throw PasswdError("\(tempPath): close: \(lastError())") }
            guard rename(tempPath, path) == 0 else { throw PasswdError("\(path): rename: \(lastError())") }
        } catch {
            unlink(tempPath)
            throw error
        }
    }
}

private struct PasswdError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

private func lastError() -> String { String(cString: strerror(errno)) }

/// Reading a secret from the controlling terminal with echo off.
private enum Terminal {
    static func readSecret(prompt: String) throws -> String {
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY)
        guard fd >= 0 else {
            throw PasswdError("no terminal to prompt for the password (use -b FILE USER PASSWORD)")
        }
        defer { close(fd) }
        var saved = termios()
        let haveTermios = tcgetattr(fd, &saved) == 0
        if haveTermios {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            quiet.c_lflag |= tcflag_t(ECHONL)
            _ = tcsetattr(fd, TCSAFLUSH, &quiet)
        }
        defer {
            if haveTermios { _ = tcsetattr(fd, TCSAFLUSH, &saved) }
        }
        _ = prompt.withCString { write(fd, $0, strlen($0)) }
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 || byte == UInt8(ascii: "\n") { break }
            if byte != UInt8(ascii: "\r") { bytes.append(byte) }
            if bytes.count > 65535 { throw PasswdError("password longer than 65535 bytes") }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw PasswdError("password is not UTF-8") }
        return text
    }
}
