import Testing

@testable import SluiceAuth

@Suite struct AccessControlListTests {
    enum Op: String, CustomStringConvertible {
        case publish, subscribe, receive
        var description: String { rawValue }
    }

    static func check(_ acl: AccessControlList, _ op: Op, _ client: String, _ user: String?, _ topic: String) -> Bool {
        switch op {
        case .publish: return acl.mayPublish(clientID: client, username: user, topic: topic)
        case .subscribe: return acl.maySubscribe(clientID: client, username: user, filter: topic)
        case .receive: return acl.mayReceive(clientID: client, username: user, topic: topic)
        }
    }

    // The sample fixture: anonymous read public/#; alice readwrite sensors/#; bob read sensors/#;
    // pattern readwrite devices/%c/# and users/%u/#.
    @Test(arguments: [
        // anonymous section
        (Op.receive, "anon1", String?.none, "public/weather", true),
        (.receive, "anon1", nil, "public", true),
        (.subscribe, "anon1", nil, "public/#", true),
        (.subscribe, "anon1", nil, "public/+/x", true),
        (.subscribe, "anon1", nil, "#", false),
        (.publish, "anon1", nil, "public/weather", false),
        (.receive, "anon1", nil, "sensors/t1", false),
        // anonymous clients get %c patterns, never %u patterns
        (.publish, "anon1", nil, "devices/anon1/state", true),
        (.publish, "anon1", nil, "devices/other/state", false),
        (.publish, "anon1", nil, "users/anon1/x", false),
        (.publish, "anon1", nil, "users//x", false),
        // alice
        (.publish, "a1", "alice", "sensors/t1", true),
        (.receive, "a1", "alice", "sensors/t1/deep", true),
        (.subscribe, "a1", "alice", "sensors/#", true),
        (.subscribe, "a1", "alice", "sensors/+", true),
        (.subscribe, "a1", "alice", "sensors/t1", true),
        (.subscribe, "a1", "alice", "#", false),
        (.subscribe, "a1", "alice", "+/t1", false),
        // named users do not get the anonymous section
        (.receive, "a1", "alice", "public/weather", false),
        (.subscribe, "a1", "alice", "public/#", false),
        // bob: read only
        (.receive, "b1", "bob", "sensors/t1", true),
        (.subscribe, "b1", "bob", "sensors/#", true),
        (.publish, "b1", "bob", "sensors/t1", false),
        // patterns for named users
        (.publish, "b1", "bob", "users/bob/inbox", true),
        (.publish, "b1", "bob", "users/alice/inbox", false),
        (.publish, "b1", "bob", "devices/b1/cmd", true),
        (.subscribe, "b1", "bob", "devices/b1/#", true),
        (.subscribe, "b1", "bob", "devices/+/#", false),
        (.receive, "b1", "bob", "devices/a1/cmd", false),
        // users without a section: patterns only
        (.publish, "c1", "carol", "users/carol/x", true),
        (.publish, "c1", "carol", "sensors/t1", false),
        // $SYS needs an explicit rule
        (.subscribe, "a1", "alice", "$SYS/#", false),
        (.receive, "a1", "alice", "$SYS/broker/uptime", false),
    ])
    func fixtureTable(op: Op, client: String, user: String?, topic: String, allowed: Bool) throws {
        let acl = try AccessControlList.load(path: fixture("acl"))
        #expect(Self.check(acl, op, client, user, topic) == allowed)
    }

    @Test func wildcardsAndDollarTopics() throws {
        let acl = try AccessControlList.parse(
            """
            user admin
            topic read #
            topic read $SYS/#
            topic write cmd/+/set
            topic readwrite a/+/c/#
            """,
            fileName: "acl"
        )
        let yes = { (op: Op, topic: String) in Self.check(acl, op, "adm", "admin", topic) }
        #expect(yes(.receive, "anything/at/all"))
        #expect(yes(.subscribe, "#"))
        #expect(yes(.receive, "$SYS/broker/uptime"))
        #expect(yes(.subscribe, "$SYS/broker/#"))
        // `#` alone does not cover `$` topics
        #expect(!AccessControlList.filter("#", matches: "$SYS/x"))
        #expect(!AccessControlList.filter("+/x", matches: "$SYS/x"))
        #expect(yes(.publish, "cmd/lamp/set"))
        #expect(!yes(.publish, "cmd/lamp/get"))
        #expect(!yes(.publish, "cmd/lamp/set/x"))
        #expect(!yes(.publish, "cmd/set"))
        #expect(yes(.publish, "cmd//set"))  // `+` matches an empty level
        #expect(yes(.publish, "a/b/c"))  // `#` matches the parent level
        #expect(yes(.publish, "a/b/c/d/e"))
        #expect(!yes(.publish, "a/b/x"))
        #expect(!yes(.publish, "$SYS/x"))
    }

    @Test(arguments: [
        ("a/#", "a/#", true),
        ("a/#", "a", true),
        ("a/#", "a/b/+", true),
        ("a/b", "a/#", false),
        ("a/b", "a/+", false),
        ("a/+", "a/+", true),
        ("a/+", "a/b", true),
        ("a/+", "a/#", false),
        ("a/+", "a/b/c", false),
        ("#", "#", true),
        ("#", "+/x", true),
        ("+/+", "+/x", true),
        ("+", "+/x", false),
        ("a/+/c", "a/+/c", true),
        ("a/+/c", "a/b/+", false),
        ("#", "$SYS/#", false),
        ("$SYS/#", "$SYS/broker/+", true),
    ])
    func subscriptionCoverage(acl: String, requested: String, covered: Bool) {
        #expect(AccessControlList.filter(acl[...], covers: requested[...]) == covered)
    }

    @Test func denyWinsOverAllow() throws {
        let acl = try AccessControlList.parse(
            """
            user alice
            topic readwrite sensors/#
            topic deny sensors/secret/#
            pattern deny devices/%c/locked
            pattern readwrite devices/%c/#
            """,
            fileName: "acl"
        )
        let alice = { (op: Op, topic: String) in Self.check(acl, op, "a1", "alice", topic) }
        #expect(alice(.publish, "sensors/t1"))
        #expect(!alice(.publish, "sensors/secret"))
        #expect(!alice(.receive, "sensors/secret/x"))
        #expect(!alice(.subscribe, "sensors/secret/#"))
        // A broader subscription is granted; the denied topics are filtered at delivery.
        #expect(alice(.subscribe, "sensors/#"))
        #expect(alice(.publish, "devices/a1/state"))
        #expect(!alice(.publish, "devices/a1/locked"))
        // Deny order does not matter: a deny written after the allow still wins.
        let later = try AccessControlList.parse("topic readwrite x/#\ntopic deny x/y\n", fileName: "acl")
        #expect(!later.mayPublish(clientID: "c", username: nil, topic: "x/y"))
        #expect(later.mayPublish(clientID: "c", username: nil, topic: "x/z"))
        // Sluice: a pattern deny also beats a user-section allow (Mosquitto 2.0 checks the section first).
        let cross = try AccessControlList.parse("user u\ntopic readwrite d/#\npattern deny d/%c/#\n", fileName: "acl")
        #expect(!cross.mayPublish(clientID: "c1", username: "u", topic: "d/c1/x"))
        #expect(cross.mayPublish(clientID: "c1", username: "u", topic: "d/c2/x"))
    }

    @Test func patternsAndDangerousIdentities() throws {
        let acl = try AccessControlList.parse(
            "pattern readwrite devices/%c/#\npattern read users/%u/%c\npattern write pre%cpost/x\n",
            fileName: "acl"
        )
        #expect(acl.mayPublish(clientID: "d1", username: nil, topic: "devices/d1/x"))
        #expect(acl.mayReceive(clientID: "d1", username: "u1", topic: "users/u1/d1"))
        #expect(!acl.mayReceive(clientID: "d1", username: "u1", topic: "users/u2/d1"))
        #expect(!acl.mayPublish(clientID: "d1", username: "u1", topic: "users/u1/d1"))
        #expect(acl.mayPublish(clientID: "d1", username: nil, topic: "pred1post/x"))  // textual, as Mosquitto 2.0
        // A client id or username with a wildcard gets no pattern at all.
        #expect(!acl.mayPublish(clientID: "+", username: nil, topic: "devices/d1/x"))
        #expect(!acl.mayPublish(clientID: "#", username: nil, topic: "devices/anything"))
        #expect(!acl.mayReceive(clientID: "d1", username: "#", topic: "users/x/d1"))
        #expect(!acl.mayPublish(clientID: "d1", username: "a+b", topic: "devices/d1/x"))
        // Shared subscriptions are judged by their filter.
        #expect(acl.maySubscribe(clientID: "d1", username: nil, filter: "$share/g/devices/d1/#"))
        #expect(!acl.maySubscribe(clientID: "d1", username: nil, filter: "$share/g/devices/#"))
    }

    @Test func deliveryOnlySubscriptionCheck() throws {
        var acl = try AccessControlList.load(path: fixture("acl"))
        #expect(!acl.maySubscribe(clientID: "a1", username: "alice", filter: "#"))
        acl.subscriptionCheck = .deliveryOnly
        #expect(acl.maySubscribe(clientID: "a1", username: "alice", filter: "#"))
        #expect(!acl.mayReceive(clientID: "a1", username: "alice", topic: "other/x"))
    }

    @Test func syntax() throws {
        let acl = try AccessControlList.parse(
            """
            # comment
               # indented comment

            topic public/#
            topic read   spaced topic/with spaces
            user  John Smith\t
            topic\twrite\tcmd/x
            user alice
            topic read a/#
            user John Smith
            topic read more/#
            """,
            fileName: "acl"
        )
        #expect(acl.anonymous.map(\.topic) == ["public/#", "spaced topic/with spaces"])
        #expect(acl.anonymous.map(\.access) == [.readwrite, .read])
        #expect(acl.users["John Smith"]?.map(\.topic) == ["cmd/x", "more/#"])
        #expect(acl.users["alice"]?.map(\.line) == [9])
        #expect(acl.mayReceive(clientID: "c", username: nil, topic: "spaced topic/with spaces"))
        #expect(acl.mayPublish(clientID: "c", username: "John Smith", topic: "cmd/x"))
    }

    @Test(arguments: [
        ("topic", 3, "needs a topic"),
        ("user", 3, "needs a username"),
        ("topic readwrit a/b", 3, "not an access type"),
        ("topic a b", 3, "not an access type"),
        ("topic read a/#/b", 3, "'#' must be"),
        ("pattern read a/b+", 3, "'+' must be"),
        // MQTTCore's filter check, as SUBSCRIBE gets: a shared subscription's group carries no wildcard.
        ("topic read $share/g+/a", 3, "shared subscription group contains a wildcard"),
        ("topics read a", 3, "unknown keyword 'topics'"),
    ])
    func badLines(line: String, number: Int, expected: String) {
        do throws(AuthError) {
            _ = try AccessControlList.parse("# acl\nuser alice\n\(line)\n", fileName: "/etc/sluice/acl")
            Issue.record("expected an error for \(line)")
        } catch {
            #expect(error.kind == .badACLLine)
            #expect(error.line == number)
            #expect(error.description.hasPrefix("/etc/sluice/acl:\(number): "))
            #expect(error.message.contains(expected), "\(error)")
        }
    }

    @Test func emptyFileAllowsNothing() throws {
        let acl = try AccessControlList.parse("# nothing\n", fileName: "acl")
        #expect(!acl.mayPublish(clientID: "c", username: nil, topic: "a"))
        #expect(!acl.maySubscribe(clientID: "c", username: "u", filter: "a"))
        #expect(!acl.mayReceive(clientID: "c", username: "u", topic: "a"))
    }
}
