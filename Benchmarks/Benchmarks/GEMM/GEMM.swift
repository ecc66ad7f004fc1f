import Benchmark
import CRawBLAS
import Strata

/// GEMM shapes: squares, and the transformer shapes [M, 2048] x [2048, 5632]^T
/// (TinyLlama's FFN up projection) for M = 1 (decode), 16 (batch), 512 (prompt).
struct Shape: Sendable {
    let name: String, m: Int, n: Int, k: Int, transB: Bool
    var flops: Int { 2 * m * n * k }
}

let shapes: [Shape] = [512, 1024, 2048, 4096].map { Shape(name: "\($0)^3", m: $0, n: $0, k: $0, transB: false) }
    + [1, 16, 512].map { Shape(name: "[\($0),2048]x[2048,5632]^T", m: $0, n: 5632, k: 2048, transB: true) }

final class Buffers: @unchecked Sendable {
    let a: Tensor, w: Tensor, c: Tensor
    init(_ s: Shape) {
        a = Tensor(zeros: [s.m, s.k])
        w = Tensor(zeros: s.transB ? [s.n, s.k] : [s.k, s.n])
        c = Tensor(zeros: [s.m, s.n])
        for i in 0..<a.count { a.f32[i] = Float(i % 13) * 0.01 }
        for i in 0..<w.count { w.f32[i] = Float(i % 7) * 0.01 }
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock],
        timeUnits: .microseconds,
        warmupIterations: 2,
        maxDuration: .seconds(3),
        maxIterations: 50
    )
    for s in shapes {
        let buf = Buffers(s)
        Benchmark("strata \(s.name)") { benchmark in
            for _ in benchmark.scaledIterations {
                if s.transB {
                    BLAS.linear(x: buf.a.f32, rows: s.m, inFeatures: s.k, weight: buf.w.f32, outFeatures: s.n, y: buf.c.f32)
                } else {
                    buf.a.matmul(buf.w, into: buf.c)
                }
            }
        }
        Benchmark("cblas_sgemm \(s.name)") { benchmark in
            for _ in benchmark.scaledIterations {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, s.transB ? CblasTrans : CblasNoTrans,
                            blasint(s.m), blasint(s.n), blasint(s.k), 1, buf.a.f32, blasint(s.k),
                            buf.w.f32, blasint(s.transB ? s.k : s.n), 0, buf.c.f32, blasint(s.n))
            }
        }
    }
}
