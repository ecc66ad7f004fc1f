// swift-tools-version:6.1
// Strata's benchmarks, a nested package so benchmark-only dependencies
// (ordo-one/benchmark) stay out of the library's dependency graph.
import PackageDescription

let package = Package(
    name: "StrataBenchmarks",
    dependencies: [
        .package(name: "Strata", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The raw C BLAS, to measure Strata's wrapper against (the benchmark's own module map).
        .systemLibrary(name: "CRawBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .executableTarget(
            name: "Kernels",
            dependencies: [
                .product(name: "Strata", package: "Strata"),
                .product(name: "Benchmark", package: "benchmark"),
                "CRawBLAS",
            ],
            path: "Benchmarks/Kernels",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // Same-run, interleaved medians of Strata's matmul vs raw cblas_sgemm, as a markdown table.
        .executableTarget(
            name: "gemm-compare",
            dependencies: [.product(name: "Strata", package: "Strata"), "CRawBLAS"],
            path: "Sources/GEMMCompare"
        ),
    ],
    swiftLanguageModes: [.v6]
)
