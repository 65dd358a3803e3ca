import Testing

@testable import SluiceServer

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct PrivilegeDropTests {
    @Test func readsTheFourIdsOfAProcStatusFile() {
        let status =
            "Name:\tsluice\nState:\tS (sleeping)\nUid:\t0\t998\t998\t998\nGid:\t0\t997\t997\t997\nGroups:\t997 \n"
        let ids = PrivilegeDrop.ids(inStatus: status)
        #expect(ids.uids == [0, 998, 998, 998])
        #expect(ids.gids == [0, 997, 997, 997])
    }

    @Test func aStatusWithoutIdLinesGivesNone() {
        let ids = PrivilegeDrop.ids(inStatus: "Name:\tx\nUid:\n")
        #expect(ids.uids.isEmpty && ids.gids.isEmpty)
    }

    @Test func rootAndNoUserNeedNoDrop() {
        #expect(!PrivilegeDrop.isNeeded(user: nil))
        #expect(!PrivilegeDrop.isNeeded(user: "root"))
    }

    @Test func aMissingUserIsNamedInTheFailure() {
        #expect(throws: PrivilegeDrop.Failure.self) { try PrivilegeDrop.account("no-such-user-sluice-test") }
        do {
            _ = try PrivilegeDrop.account("no-such-user-sluice-test")
        } catch {
            #expect(error.description.contains("no-such-user-sluice-test: no such user"))
        }
    }

    @Test func thisProcessThreadsAllRunAsItsOwnIds() {
        // Every thread of the test process has the ids the process started with.
        #expect(PrivilegeDrop.threadsNotRunningAs(uid: getuid(), gid: getgid()).isEmpty)
    }
}
