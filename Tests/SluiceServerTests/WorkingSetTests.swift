import Testing

@testable import SluiceServer

@Suite struct WorkingSetTests {
    typealias Segment = WorkingSet.LoadSegment
    let page: UInt = 0x1000

    @Test func readOnlySegmentBecomesWholePagesAtTheLoadBias() {
        // The release binary's layout (gold): one R E segment, then one RW segment.
        let segments = [
            Segment(virtualAddress: 0, fileSize: 0x1f8_65d0, writable: false),
            Segment(virtualAddress: 0x1f8_7e40, fileSize: 0x259_6fc8, writable: true),
        ]
        let bias: UInt = 0x5555_0000_0000
        #expect(
            WorkingSet.releasableRanges(segments, loadBias: bias, pageSize: page) == [bias..<(bias + 0x1f8_7000)]
        )
    }

    @Test func pagesSharedWithAWritableSegmentAreNeverIncluded() {
        // Read-only ends in the page where the writable one begins.
        let after = [
            Segment(virtualAddress: 0x1000, fileSize: 0x1500, writable: false),
            Segment(virtualAddress: 0x2800, fileSize: 0x100, writable: true),
        ]
        #expect(WorkingSet.releasableRanges(after, loadBias: 0, pageSize: page) == [0x1000..<0x2000])
        // Writable ends in the page where the read-only one begins.
        let before = [
            Segment(virtualAddress: 0, fileSize: 0x1200, writable: true),
            Segment(virtualAddress: 0x1200, fileSize: 0x1e00, writable: false),
        ]
        #expect(WorkingSet.releasableRanges(before, loadBias: 0, pageSize: page) == [0x2000..<0x3000])
        // A read-only segment entirely inside a writable segment's pages leaves nothing.
        let inside = [
            Segment(virtualAddress: 0, fileSize: 0x3000, writable: true),
            Segment(virtualAddress: 0x1100, fileSize: 0x100, writable: false),
        ]
        #expect(WorkingSet.releasableRanges(inside, loadBias: 0, pageSize: page).isEmpty)
    }

    @Test func writableEmptyAndOverflowingSegmentsGiveNothing() {
        let segments = [
            Segment(virtualAddress: 0x1000, fileSize: 0x1000, writable: true),
            Segment(virtualAddress: 0x4000, fileSize: 0, writable: false),
            Segment(virtualAddress: UInt.max - 0x10, fileSize: 0x100, writable: false),
        ]
        #expect(WorkingSet.releasableRanges(segments, loadBias: 0, pageSize: page).isEmpty)
    }

    @Test func mapsGiveFileBackedMappingsWithoutWritePermission() {
        let maps = """
            55d4c8a00000-55d4caa00000 r-xp 00000000 08:01 1234                       /usr/bin/sluice
            55d4caa00000-55d4cab00000 r--p 02000000 08:01 1234                       /usr/bin/sluice
            55d4cab00000-55d4cac00000 rw-p 02100000 08:01 1234                       /usr/bin/sluice
            55d4cac00000-55d4cad00000 rw-p 00000000 00:00 0                          [heap]
            7f0000000000-7f0000001000 r--p 00000000 00:00 0
            7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0                          [vdso]
            garbage line
            zz-10 r-xp 00000000 08:01 1
            """
        #expect(
            WorkingSet.readOnlyMappings(maps) == [
                0x55d4_c8a0_0000..<0x55d4_caa0_0000, 0x55d4_caa0_0000..<0x55d4_cab0_0000,
            ]
        )
    }

    @Test func clipKeepsOnlyTheMappedParts() {
        let mappings: [Range<UInt>] = [0x5000..<0x6000, 0x1000..<0x3000]
        #expect(WorkingSet.clip(0x2000..<0x8000, to: mappings) == [0x2000..<0x3000, 0x5000..<0x6000])
        #expect(WorkingSet.clip(0x3000..<0x5000, to: mappings).isEmpty)
    }

    @Test func statmResidentField() {
        #expect(WorkingSet.residentPages(statm: "12345 678 90 1 0 2 0\n") == 678)
        #expect(WorkingSet.residentPages(statm: "12345") == nil)
        #expect(WorkingSet.residentPages(statm: "") == nil)
    }

    #if os(Linux)
        @Test func releasesThisProcessesCodeAndKeepsRunning() throws {
            let image = try #require(WorkingSet.mainExecutable())
            #expect(!image.hasTextRelocations)
            #expect(image.segments.contains { !$0.writable })
            #expect(image.segments.contains { $0.writable })
            let values: [Int] = (0..<1000).map { $0 * 7 }  // heap and writable data must survive
            let outcome = WorkingSet.releaseStartupCode()
            #expect(outcome.skipped == nil)
            #expect(outcome.regions > 0)
            #expect(outcome.failures == 0)
            #expect(outcome.advisedBytes > 0)
            #expect(outcome.releasedBytes != nil)
            // Code runs again from the page cache; data is intact.
            let sum: Int = values.reduce(0, +)
            #expect(sum == 3_496_500)
            #expect(WorkingSet.releaseStartupCode().failures == 0)
        }
    #endif
}
