import Testing
@testable import SluiceBridge

@Test func moduleLinks() {}
