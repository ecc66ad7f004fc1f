// swift-tools-version:6.0
// Strata's libFuzzer targets, a nested package built with `-sanitize=fuzzer` (flags from the
// Makefile's `make fuzz`, never here). Each target feeds bytes to one parser of hostile input;
// a crash, a trap or a hang (libFuzzer's -timeout) is a finding.
import PackageDescription

let targets = ["fuzz-safetensors", "fuzz-config", "fuzz-tokenizer", "fuzz-gguf", "fuzz-jinja", "fuzz-chat", "fuzz-json", "fuzz-placement", "fuzz-prompts"]

let package = Package(
    name: "StrataFuzz",
    dependencies: [.package(name: "Strata", path: "..")],
    targets: targets.map { name in
        .executableTarget(name: name, dependencies: [.product(name: "Strata", package: "Strata"), "FuzzSupport"], path: "Sources/\(name)")
    } + [.target(name: "FuzzSupport", path: "Sources/FuzzSupport")]
)
