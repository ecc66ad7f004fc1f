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
    kernelBenchmarks()
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

/// The other kernels of a forward pass, at TinyLlama's sizes.
final class KernelBuffers: @unchecked Sendable {
    let rows = 512, hidden = 2048, heads = 32, kvHeads = 4, headDim = 64, context = 512
    let x: Tensor, w: Tensor, out: Tensor, scores: Tensor, q: Tensor, k: Tensor, v: Tensor, attn: Tensor
    let half: Tensor, wide: Tensor
    let pool: Tensor
    init() {
        x = Tensor(zeros: [rows, hidden]); w = Tensor(zeros: [hidden]); out = Tensor(zeros: [rows, hidden])
        scores = Tensor(zeros: [rows * context])
        q = Tensor(zeros: [rows, heads * headDim]); k = Tensor(zeros: [context, kvHeads * headDim]); v = Tensor(zeros: [context, kvHeads * headDim])
        attn = Tensor(zeros: [rows, heads * headDim])
        half = Tensor(zeros: [4 << 20], dtype: .bf16); wide = Tensor(zeros: [4 << 20])
        pool = Tensor(zeros: [64, 16, kvHeads * headDim])
        for i in 0..<x.count { x.f32[i] = Float(i % 17) * 0.01 }
        for i in 0..<w.count { w.f32[i] = 1 }
        for i in 0..<q.count { q.f32[i] = Float(i % 13) * 0.01 }
        for i in 0..<k.count { k.f32[i] = Float(i % 11) * 0.01; v.f32[i] = Float(i % 7) * 0.01 }
    }
}

let kernelBenchmarks: @Sendable () -> Void = {
    let b = KernelBuffers()
    Benchmark("attention prefill 512x512, 32 heads / 4 kv") { benchmark in
        for _ in benchmark.scaledIterations {
            Attention.causal(q: b.q.f32, ldq: b.heads * b.headDim, k: b.k.f32, ldk: b.kvHeads * b.headDim, v: b.v.f32, ldv: b.kvHeads * b.headDim,
                             out: b.attn.f32, ldo: b.heads * b.headDim, tokens: b.rows, start: 0, keys: b.context,
                             heads: b.heads, kvHeads: b.kvHeads, headDim: b.headDim, scale: 0.125, scores: b.scores.f32)
        }
    }
    Benchmark("rmsnorm 512x2048") { benchmark in
        for _ in benchmark.scaledIterations { Ops.rmsNorm(b.x.f32, weight: b.w.f32, eps: 1e-5, b.out.f32, rows: b.rows, n: b.hidden) }
    }
    Benchmark("softmax causal 512x512") { benchmark in
        for _ in benchmark.scaledIterations { Ops.softmax(b.scores.f32, rows: b.rows, n: b.context, causalOffset: 0) }
    }
    Benchmark("bf16 to f32, 4M values") { benchmark in
        for _ in benchmark.scaledIterations { HalfConversion.toF32(b.half.rawPointer, dtype: .bf16, b.wide.f32, count: b.wide.count) }
    }
    Benchmark("f16 to f32, 4M values") { benchmark in
        for _ in benchmark.scaledIterations { HalfConversion.toF32(b.half.rawPointer, dtype: .f16, b.wide.f32, count: b.wide.count) }
    }
    Benchmark("KV block copy, 64 blocks x 16 tokens x 256") { benchmark in
        for _ in benchmark.scaledIterations { b.attn.f32.update(from: b.pool.f32, count: b.pool.count) }
    }
}
