import Foundation
import StrataTensor

/// Quick measurements of the machine's limits, used by benchmarks and the planner's profile.
public enum Measure {
    /// Memory read bandwidth in bytes/s: the median of `repeats` parallel passes summing a
    /// `bytes`-sized f32 buffer (far larger than the caches), with `Threads.count` threads.
    public static func memoryReadBandwidth(bytes: Int = 1 << 30, repeats: Int = 5) -> Double {
        let n = bytes / 4
        let buf = Tensor(zeros: [n])
        let p = buf.f32
        for i in stride(from: 0, to: n, by: 1024) { p[i] = 1 }
        let box = UncheckedSendable(p)
        var times: [Double] = []
        let sink = UnsafeMutablePointer<Float>.allocate(capacity: 64)
        defer { sink.deallocate() }
        let sinkBox = UncheckedSendable(sink)
        for _ in 0..<(repeats + 1) {
            let t0 = now()
            Threads.parallelFor(n, minChunk: 1 << 20) { r in
                // 8 independent accumulators so the loop is load-bound, not add-latency-bound
                var a0: Float = 0, a1: Float = 0, a2: Float = 0, a3: Float = 0, a4: Float = 0, a5: Float = 0, a6: Float = 0, a7: Float = 0
                var i = r.lowerBound
                let q = box.value
                while i + 8 <= r.upperBound {
                    a0 += q[i]; a1 += q[i + 1]; a2 += q[i + 2]; a3 += q[i + 3]
                    a4 += q[i + 4]; a5 += q[i + 5]; a6 += q[i + 6]; a7 += q[i + 7]
                    i += 8
                }
                while i < r.upperBound { a0 += q[i]; i += 1 }
                sinkBox.value[(r.lowerBound / (1 << 20)) % 64] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7
            }
            times.append(now() - t0)
        }
        times.removeFirst()
        return Double(bytes) / median(times)
    }

    /// sgemm FLOP/s for `[m, k] x [n, k]^T` through the BLAS wrapper (median of `repeats`).
    public static func gemmFlops(m: Int, n: Int, k: Int, repeats: Int = 5) -> Double {
        let a = Tensor(zeros: [m, k]), w = Tensor(zeros: [n, k]), c = Tensor(zeros: [m, n])
        for i in stride(from: 0, to: a.count, by: 7) { a.f32[i] = 0.01 }
        for i in stride(from: 0, to: w.count, by: 5) { w.f32[i] = 0.01 }
        BLAS.linear(x: a.f32, rows: m, inFeatures: k, weight: w.f32, outFeatures: n, y: c.f32)
        var times: [Double] = []
        for _ in 0..<repeats {
            let t0 = now()
            BLAS.linear(x: a.f32, rows: m, inFeatures: k, weight: w.f32, outFeatures: n, y: c.f32)
            times.append(now() - t0)
        }
        return 2 * Double(m) * Double(n) * Double(k) / median(times)
    }

    /// A Llama layer's seven f32 weight matrices, `[out, in]`: q and o `[hidden, hidden]`, k and v
    /// `[kvDim, hidden]`, gate and up `[ffn, hidden]`, down `[hidden, ffn]`; every page touched.
    static func layerMatrices(hidden: Int, kvDim: Int, ffn: Int) -> [Tensor] {
        let shapes = [(hidden, hidden), (kvDim, hidden), (kvDim, hidden), (hidden, hidden), (ffn, hidden), (ffn, hidden), (hidden, ffn)]
        return shapes.map { s in
            let w = Tensor(storage: TensorStorage(byteCount: s.0 * s.1 * 4, hugePages: true), dtype: .f32, shape: [s.0, s.1])
            for i in stride(from: 0, to: w.count, by: 1024) { w.f32[i] = 0.01 }
            return w
        }
    }

    /// Seconds per f32 weight parameter of one-row GEMVs over a Llama layer's matrices
    /// (`[hidden, hidden]` x2, `[kvDim, hidden]` x2, `[ffn, hidden]` x2, `[hidden, ffn]`), the median
    /// over passes that cycle through `layers` such layers, so the weights come from memory as in
    /// a decode step, not from the caches. Small matrices cost more per parameter than one large one.
    public static func gemvSecondsPerParam(hidden: Int = 2048, kvDim: Int = 256, ffn: Int = 5632, layers: Int = 4, repeats: Int = 5) -> Double {
        let ws = (0..<layers).flatMap { _ in layerMatrices(hidden: hidden, kvDim: kvDim, ffn: ffn) }
        let x = Tensor(zeros: [1, max(hidden, ffn)]), y = Tensor(zeros: [1, max(hidden, ffn)])
        for i in 0..<x.count { x.f32[i] = 0.5 }
        let params = Double(ws.reduce(0) { $0 + $1.count })
        var times: [Double] = []
        for r in 0..<(repeats + 1) {
            let t0 = now()
            for w in ws { BLAS.linear(x: x.f32, rows: 1, inFeatures: w.shape[1], weight: w.f32, outFeatures: w.shape[0], y: y.f32) }
            if r > 0 { times.append((now() - t0) / params) }
        }
        return median(times)
    }

    /// Seconds of `[rows, k] x [n, k]^T` GEMMs over one Llama layer's matrices (the shapes of
    /// `gemvSecondsPerParam`), through the BLAS wrapper; the median of `repeats`.
    public static func layerGemmSeconds(rows: Int, hidden: Int = 2048, kvDim: Int = 256, ffn: Int = 5632, repeats: Int = 7) -> Double {
        let ws = layerMatrices(hidden: hidden, kvDim: kvDim, ffn: ffn)
        let x = Tensor(zeros: [rows, max(hidden, ffn)]), y = Tensor(zeros: [rows, max(hidden, ffn)])
        for i in stride(from: 0, to: x.count, by: 7) { x.f32[i] = 0.5 }
        var times: [Double] = []
        for r in 0..<(repeats + 1) {
            let t0 = now()
            for w in ws { BLAS.linear(x: x.f32, rows: rows, inFeatures: w.shape[1], weight: w.f32, outFeatures: w.shape[0], y: y.f32) }
            if r > 0 { times.append(now() - t0) }
        }
        return median(times)
    }

    /// 16-bit values widened to f32 per second, as `WeightMatrix` does before a many-row GEMM:
    /// bands of 4M elements from a 256 MB source (so it comes from memory) into one scratch band,
    /// on one thread; the median of `repeats` passes.
    public static func widenElementsPerSecond(dtype: DType, elements: Int = 128 << 20, band: Int = 4 << 20, repeats: Int = 3) -> Double {
        let src = TensorStorage(byteCount: elements * 2, hugePages: true)
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: band)
        defer { dst.deallocate() }
        let p = src.base.assumingMemoryBound(to: UInt16.self)
        for i in stride(from: 0, to: elements, by: 512) { p[i] = 0x3c00 }
        var times: [Double] = []
        for _ in 0..<repeats {
            let t0 = now()
            var o = 0
            while o < elements {
                let n = min(band, elements - o)
                HalfConversion.toF32(src.base + o * 2, dtype: dtype, dst, count: n)
                o += n
            }
            times.append(now() - t0)
        }
        return Double(elements) / median(times)
    }

    /// Seconds per row of a Llama layer's element-wise work outside the GEMMs, through the same
    /// kernels the forward pass calls: two RMSNorms and two residual adds over `hidden`, RoPE on
    /// the query and key heads, SwiGLU over `ffn`; the median of `repeats` at `rows` rows.
    public static func layerElementwiseSecondsPerRow(rows: Int = 512, hidden: Int = 2048, heads: Int = 32, kvHeads: Int = 4, headDim: Int = 64,
                                                    ffn: Int = 5632, repeats: Int = 5) -> Double {
        let x = Tensor(zeros: [rows, hidden]), r = Tensor(zeros: [rows, hidden]), w = Tensor(zeros: [hidden])
        let q = Tensor(zeros: [rows, heads * headDim]), k = Tensor(zeros: [rows, kvHeads * headDim])
        let g = Tensor(zeros: [rows, ffn]), u = Tensor(zeros: [rows, ffn])
        for i in 0..<hidden { w.f32[i] = 1 }
        for i in stride(from: 0, to: x.count, by: 3) { x.f32[i] = 0.1 }
        let rope = RoPE(headDim: headDim, theta: 10000)
        let positions = (0..<rows).map { Int32($0) }
        var times: [Double] = []
        for _ in 0..<(repeats + 1) {
            let t0 = now()
            Ops.rmsNorm(x.f32, weight: w.f32, eps: 1e-5, r.f32, rows: rows, n: hidden)
            positions.withUnsafeBufferPointer { p in
                rope.apply(q.f32, tokens: rows, heads: heads, positions: p)
                rope.apply(k.f32, tokens: rows, heads: kvHeads, positions: p)
            }
            Ops.add(x.f32, r.f32, x.f32, count: rows * hidden)
            Ops.rmsNorm(x.f32, weight: w.f32, eps: 1e-5, r.f32, rows: rows, n: hidden)
            Ops.swiglu(g.f32, u.f32, count: rows * ffn)
            Ops.add(x.f32, r.f32, x.f32, count: rows * hidden)
            times.append(now() - t0)
        }
        times.removeFirst()
        return median(times) / Double(rows)
    }
}
