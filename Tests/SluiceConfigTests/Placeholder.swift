import Testing
@testable import SluiceConfig

@Test func moduleLinks() {}
