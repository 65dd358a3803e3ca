import Foundation
import SluiceBase64
import Testing

@testable import SluiceAuth

@Suite struct PasswordFileTests {
    @Test func fixtureUsersVerify() throws {
        let file = try PasswordFile.load(path: fixture("passwd"))
        #expect(file.usernames == ["alice", "bob"])
        #expect(file.verify(username: "alice", password: Array("alicepass".utf8)))
        #expect(file.verify(username: "bob", password: Array("bobpass".utf8)))
        #expect(!file.verify(username: "alice", password: Array("bobpass".utf8)))
        #expect(!file.verify(username: "alice", password: Array("alicepass ".utf8)))
        #expect(!file.verify(username: "alice", password: []))
        #expect(!file.verify(username: "carol", password: Array("alicepass".utf8)))
        #expect(!file.verify(username: "", password: []))
        // Mosquitto would hash only up to the NUL; Sluice refuses such passwords.
        #expect(!file.verify(username: "alice", password: Array("alicepass".utf8) + [0, 0x41]))
    }

    @Test(.enabled(if: executableExists("/usr/bin/mosquitto_passwd")))
    func acceptsFilesWrittenByMosquittoPasswd() throws {
        let dir = try makeTemporaryDirectory()
        defer { removeTemporaryDirectory(dir) }
        let path = dir + "/passwd"
        let created = try runProcess("/usr/bin/mosquitto_passwd", ["-c", "-b", path, "dora", "d0ra pass wörd"])
        #expect(created.status == 0, "\(created.stderr)")
        // mosquitto_passwd 2.0 can still write the old $6$ form.
        let added = try runProcess("/usr/bin/mosquitto_passwd", ["-H", "sha512", "-b", path, "eve", "evepass"])
        #expect(added.status == 0, "\(added.stderr)")

        let text = try String(contentsOfFile: path, encoding: .utf8)
        // What mosquitto_passwd 2.0.11 writes: $7$, 101 iterations, 12-byte salt, 64-byte hash.
        let dora = try #require(text.split(separator: "\n").first { $0.hasPrefix("dora:") })
        let fields = dora.dropFirst("dora:".count).split(separator: "$")
        #expect(fields.count == 4)
        #expect(fields[0] == "7")
        #expect(fields[1] == "101")
        #expect(Base64.decode(fields[2])?.count == 12)
        #expect(Base64.decode(fields[3])?.count == 64)
        #expect(text.contains("eve:$6$"))

        let file = try PasswordFile.load(path: path)
        #expect(file.verify(username: "dora", password: Array("d0ra pass wörd".utf8)))
        #expect(!file.verify(username: "dora", password: Array("d0ra pass word".utf8)))
        #expect(file.verify(username: "eve", password: Array("evepass".utf8)))
        #expect(!file.verify(username: "eve", password: Array("evepas".utf8)))
    }

    @Test func hashLineMatchesPythonHashlib() throws {
        let line = try PasswordFile.hashLine(username: "frank", password: "fr@nk ünïcode", iterations: 1000)
        #expect(line.hasPrefix("frank:$7$1000$"))
        let fields = line.dropFirst("frank:".count).split(separator: "$")
        #expect(fields.count == 4)
        let salt = try #require(Base64.decode(fields[2]))
        #expect(salt.count == 12)
        #expect(Base64.decode(fields[3])?.count == 64)

        // Verify with an independent implementation.
        if executableExists("/usr/bin/python3") {
            let script = """
                import base64, hashlib, sys
                salt = base64.b64decode(sys.argv[2])
                print(base64.b64encode(hashlib.pbkdf2_hmac('sha512', sys.argv[1].encode(), salt, int(sys.argv[3]))).decode())
                """
            let result = try runProcess("/usr/bin/python3", ["-c", script, "fr@nk ünïcode", String(fields[2]), "1000"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == String(fields[3]))
        }

        let file = try PasswordFile.parse(line + "\n", fileName: "generated")
        #expect(file.verify(username: "frank", password: Array("fr@nk ünïcode".utf8)))
        #expect(!file.verify(username: "frank", password: Array("fr@nk unicode".utf8)))

        // Fresh salt every time.
        #expect(
            try PasswordFile.hashLine(username: "a", password: "p")
                != PasswordFile.hashLine(username: "a", password: "p")
        )
        #expect(try PasswordFile.hashLine(username: "a", password: "p").hasPrefix("a:$7$101$"))
    }

    @Test func knownVectors() throws {
        // Computed with Python: sha512(b"secret" + b"0123456789ab") and pbkdf2_hmac("sha512", b"secret", salt, 1000).
        let text = """
            # known vectors
            six:$6$MDEyMzQ1Njc4OWFi$qEXipeLbgxRlwd06QHfY5WITkUZg0jLg9SZbXzq3ifXjfj+v3GbJGrSfC5PAg3UNCS+UFfbhUIZX4bmIAs330w==

            seven:$7$1000$MDEyMzQ1Njc4OWFi$ZJEeM8haE9d5XdQRkROfY+VNm95TyLII2wMF7gvAreqXSheCQReksJ+3flNZrfPrV1dYquIBGQmTU89cHgTqUg==
            """
        let file = try PasswordFile.parse(text, fileName: "vectors")
        #expect(file.verify(username: "six", password: Array("secret".utf8)))
        #expect(!file.verify(username: "six", password: Array("Secret".utf8)))
        #expect(file.verify(username: "seven", password: Array("secret".utf8)))
        #expect(!file.verify(username: "seven", password: Array("secret1".utf8)))
    }

    @Test func crlfBlanksAndDuplicates() throws {
        let first = try PasswordFile.hashLine(username: "dup", password: "first")
        let second = try PasswordFile.hashLine(username: "dup", password: "second")
        let text = "# comment\r\n\r\n   \r\n\(first)\r\n  \(second)  \r\n"
        let file = try PasswordFile.parse(text, fileName: "dups")
        #expect(file.usernames == ["dup"])
        // Last wins, as Mosquitto 2.0's lookup finds the entry added last.
        #expect(file.verify(username: "dup", password: Array("second".utf8)))
        #expect(!file.verify(username: "dup", password: Array("first".utf8)))
    }

    @Test(arguments: [
        ("plain:text-password", "not hashed"),
        ("nocolon", "no ':'"),
        (
            ":$7$101$MDEyMzQ1Njc4OWFi$ZJEeM8haE9d5XdQRkROfY+VNm95TyLII2wMF7gvAreqXSheCQReksJ+3flNZrfPrV1dYquIBGQmTU89cHgTqUg==",
            "empty username"
        ),
        (
            "u:$7$0$MDEyMzQ1Njc4OWFi$ZJEeM8haE9d5XdQRkROfY+VNm95TyLII2wMF7gvAreqXSheCQReksJ+3flNZrfPrV1dYquIBGQmTU89cHgTqUg==",
            "iteration"
        ),
        (
            "u:$7$abc$MDEyMzQ1Njc4OWFi$ZJEeM8haE9d5XdQRkROfY+VNm95TyLII2wMF7gvAreqXSheCQReksJ+3flNZrfPrV1dYquIBGQmTU89cHgTqUg==",
            "iteration"
        ),
        (
            "u:$7$101$MDEy!!!1Njc4OWFi$ZJEeM8haE9d5XdQRkROfY+VNm95TyLII2wMF7gvAreqXSheCQReksJ+3flNZrfPrV1dYquIBGQmTU89cHgTqUg==",
            "salt is not valid base64"
        ),
        (
            "u:$7$101$MDEyMzQ1$ZJEeM8haE9d5XdQRkROfY+VNm95TyLII2wMF7gvAreqXSheCQReksJ+3flNZrfPrV1dYquIBGQmTU89cHgTqUg==",
            "salt is 6 bytes"
        ),
        ("u:$7$101$MDEyMzQ1Njc4OWFi$ZJEeM8haE9d5XdQRkROfY+VNm95TyLII2wMF7gvAreqXSheCQReksJ", "hash is 40 bytes"),
        (
            "u:$7$101$MDEyMzQ1Njc4OWFi$ZJEeM8haE9d5XdQRkROfY+VNm95TyLII2wMF7gvAreqXSheCQReksJ+3flNZrfPrV1dYquIBGQmTU89cHgTqU%==",
            "hash is not valid base64"
        ),
        ("u:$7$101$MDEyMzQ1Njc4OWFi", "needs 4 fields"),
        ("u:$6$MDEyMzQ1Njc4OWFi", "needs 3 fields"),
        (
            "u:$5$MDEyMzQ1Njc4OWFi$ZJEeM8haE9d5XdQRkROfY+VNm95TyLII2wMF7gvAreqXSheCQReksJ+3flNZrfPrV1dYquIBGQmTU89cHgTqUg==",
            "unknown hash type"
        ),
        ("u:$argon2id$v=19$m=47104,t=1,p=1$c2FsdA$aGFzaA", "argon2id"),
        ("u:", "missing password hash"),
    ])
    func badLinesNameTheLineNotTheHash(line: String, expected: String) throws {
        let good = try PasswordFile.hashLine(username: "ok", password: "ok")
        let text = "# header\n\(good)\n\n\(line)\n"
        do throws(AuthError) {
            _ = try PasswordFile.parse(text, fileName: "/etc/sluice/passwd")
            Issue.record("expected an error for \(line)")
        } catch {
            #expect(error.kind == .badPasswordLine)
            #expect(error.file == "/etc/sluice/passwd")
            #expect(error.line == 4)
            #expect(error.description.hasPrefix("/etc/sluice/passwd:4: "))
            #expect(error.message.contains(expected), "\(error)")
            // Never echo the hash (or any '$' field of it) back.
            if let dollar = line.firstIndex(of: "$") {
                for field in line[dollar...].split(separator: "$") where field.count >= 6 && field != "argon2id" {
                    #expect(!error.description.contains(field), "\(error) echoes '\(field)'")
                }
            }
            if line.hasPrefix("plain:") { #expect(!error.description.contains("text-password")) }
        }
    }

    @Test func missingFileIsAnError() {
        #expect(throws: AuthError.self) { try PasswordFile.load(path: "/nonexistent/sluice/passwd") }
        do throws(AuthError) {
            _ = try PasswordFile.load(path: "/nonexistent/sluice/passwd")
        } catch {
            #expect(error.kind == .unreadableFile)
            #expect(error.description.contains("/nonexistent/sluice/passwd"))
        }
    }
}
