import Testing
@testable import SluiceStore

@Test func moduleLinks() {}
