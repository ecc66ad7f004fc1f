// swift-tools-version:6.0
// Strata: transformer language models on the CPU, in Swift, on OpenBLAS.
// Compiler speed flags live in the Makefile, never here: a package that sets them cannot be used as a dependency.
import PackageDescription

let package = Package(
    name: "Strata",
    products: [
        .library(name: "Strata", targets: ["Strata"]),
        // pipeline stages across the ranks of an MPI job (needs Open MPI: libopenmpi-dev); the library above builds without it
        .library(name: "StrataMPI", targets: ["StrataMPI"]),
        .executable(name: "strata", targets: ["StrataCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]
        ),
        // line editing and history for `strata chat` (BSD libedit's readline interface); the CLI only
        .systemLibrary(
            name: "CEditLine",
            pkgConfig: "libedit",
            providers: [.apt(["libedit-dev"])]
        ),
        // Open MPI's C interface (only StrataMPI imports it)
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        // hand-written SIMD kernels, every instruction set behind __attribute__((target)), chosen at run time
        .target(name: "CStrataKernels"),
        // libc constants the Glibc module lacks (O_DIRECT), from the platform headers; only FileIO imports it
        .target(name: "CStrataSys"),
        .target(name: "StrataTensor", dependencies: ["COpenBLAS", "CStrataKernels", "CStrataSys"]),
        // an order-keeping JSON value and parser (duplicate keys visible), Python json.dumps output
        .target(name: "StrataJSON"),
        .target(name: "StrataFormats", dependencies: ["StrataTensor", "StrataJSON"]),
        // the Jinja template language chat templates are written in (no Swift package for it resolves here)
        .target(name: "StrataJinja", dependencies: ["StrataJSON"]),
        .target(name: "StrataModels", dependencies: ["StrataTensor", "StrataFormats", "StrataJinja"]),
        .target(name: "StrataMemory", dependencies: ["StrataTensor"]),
        .target(name: "StrataPlanner", dependencies: ["StrataTensor"]),


        .target(name: "Strata", dependencies: ["StrataTensor", "StrataFormats", "StrataModels", "StrataMemory", "StrataPlanner"]),
        // pipeline stages over MPI ranks (Strata's `Pipeline`), its own target so that Strata builds without MPI
        .target(name: "StrataMPI", dependencies: ["CMPI", "Strata", "StrataMemory", "StrataModels", "StrataPlanner", "StrataTensor"]),
        // the OpenAI-compatible HTTP server (SwiftNIO) over one ServingEngine
        .target(name: "StrataServer", dependencies: ["Strata", "StrataMemory", .product(name: "NIOCore", package: "swift-nio"),
                                                     .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                                                     .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "StrataCLI",
            dependencies: ["CEditLine", "Strata", "StrataServer", "StrataMPI", .product(name: "Logging", package: "swift-log"), "StrataMemory", "StrataPlanner", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // helpers shared by the test targets (not a product)
        .target(name: "StrataTestSupport", dependencies: ["StrataTensor"], path: "Tests/StrataTestSupport"),
        // counts one thread's heap allocations (the decode step allocates nothing); tests only
        .target(name: "CStrataAllocCounter", path: "Tests/CStrataAllocCounter"),
        .testTarget(name: "StrataJinjaTests", dependencies: ["StrataJinja"]),
        .testTarget(name: "StrataTensorTests", dependencies: ["StrataTensor", "StrataTestSupport"]),
        .testTarget(name: "StrataModelTests", dependencies: ["Strata", "StrataFormats", "StrataModels", "StrataMemory", "StrataPlanner", "StrataTestSupport",
                                                            "CStrataAllocCounter"]),
    ],
    swiftLanguageModes: [.v6]
)
