#!/usr/bin/env bash
# fe-size-probe.sh: what FoundationEssentials costs the stripped `sluice` binary, measured on three
# tiny executables linked exactly as packaging/build-deb.sh links sluice (static stdlib, lld,
# function sections, --icf=all, DT_RELR; stripped the same way):
#   none      no ArgumentParser, no FoundationEssentials (the static stdlib's floor)
#   ap        one ParsableCommand on this package's ArgumentParser
#   ap+fe     the same, plus the FoundationEssentials API Sluice calls (JSONEncoder/Decoder with
#             snake_case keys, Date, FileManager, String(contentsOfFile:), ProcessInfo)
# With ARGUMENT_PARSER=DIR (a swift-argument-parser checkout, e.g. one without its
# FoundationEssentials import) the ap rows use that copy instead. Issue 17; BENCHMARKS.md has results.
#   scripts/fe-size-probe.sh [WORKDIR]      # ~2-5 min (a release build of ArgumentParser)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
parser="${ARGUMENT_PARSER:-$root/.build/checkouts/swift-argument-parser}"
[ -d "$parser/Sources/ArgumentParser" ] || { echo "no swift-argument-parser at $parser (swift package resolve first)" >&2; exit 1; }
mkdir -p "$work/Sources/none" "$work/Sources/ap" "$work/Sources/apfe"
cat > "$work/Package.swift" <<SWIFT
// swift-tools-version:6.0
import PackageDescription
let parser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let package = Package(
    name: "fesizeprobe",
    dependencies: [.package(path: "$parser")],
    targets: [
        .executableTarget(name: "none"),
        .executableTarget(name: "ap", dependencies: [parser]),
        .executableTarget(name: "apfe", dependencies: [parser]),
    ]
)
SWIFT
cat > "$work/Sources/none/main.swift" <<'SWIFT'
print(CommandLine.arguments.count, CommandLine.arguments.first ?? "")
SWIFT
cat > "$work/Sources/ap/main.swift" <<'SWIFT'
import ArgumentParser
struct Tool: ParsableCommand {
    @Option var name: String = "x"
    @Flag var json = false
    func run() throws { print(name, json) }
}
Tool.main()
SWIFT
cat > "$work/Sources/apfe/main.swift" <<'SWIFT'
import ArgumentParser
import FoundationEssentials
struct Snapshot: Codable { var storeBytes: Int; var startedAt: Double; var name: String?; var rows: [Double] }
struct Tool: ParsableCommand {
    @Option var name: String = "x"
    @Flag var json = false
    func run() throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try encoder.encode(
            Snapshot(storeBytes: 1, startedAt: Date().timeIntervalSince1970, name: name, rows: [1.5]))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        print(String(decoding: data, as: UTF8.self), try decoder.decode(Snapshot.self, from: data).storeBytes)
        print(FileManager.default.fileExists(atPath: name),
              (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.count ?? 0)
        print((try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8)) ?? "", ProcessInfo.processInfo.processIdentifier)
    }
}
Tool.main()
SWIFT
cd "$work"
swift build -c release --static-swift-stdlib --disable-local-rpath \
    -Xswiftc -use-ld=lld -Xswiftc -Xfrontend -Xswiftc -function-sections \
    -Xlinker -z -Xlinker now -Xlinker --no-export-dynamic \
    -Xlinker -z -Xlinker pack-relative-relocs -Xlinker --icf=all >&2
for name in none ap apfe; do
    strip --remove-section=.comment --remove-section=.note -o "$work/$name.stripped" ".build/release/$name"
    printf '%-6s %10d bytes stripped\n' "$name" "$(stat -c %s "$work/$name.stripped")"
done
