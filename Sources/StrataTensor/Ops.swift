import CStrataKernels
import Foundation

/// Elementwise and row-wise operations of the transformer layers.
///
/// Every op has a pointer form (used by the forward pass on preallocated
/// buffers: nothing is allocated) and most have a `Tensor` form (checks shapes
/// with `precondition`, used by tests and tools). Computation is f32.
public enum Ops {
    // MARK: exp

    /// e^x in f32 by range reduction (x = n ln2 + r, |r| <= ln2/2) and a degree-6 polynomial:
    /// relative error below 3e-7 on [-87, 88] (checked against `exp` in tests); inputs are
    /// clamped to that range (so e^-inf gives ~1e-38, not 0). Branch-free, so loops over it vectorize.
    @inlinable @inline(__always)
    public static func fastExp(_ x: Float) -> Float {
        let xc = min(max(x, -87.0), 88.0)
        // n = round(x / ln2), to nearest even, by adding 1.5 * 2^23: the integer lands in the low
        // mantissa bits, read back without a float-to-int conversion (which traps on NaN: a NaN
        // input gives NaN, so a non-finite pass is reported, not a crash)
        let t = xc * 1.4426950408889634 + 12582912.0
        let n = t - 12582912.0
        let r = xc - n * 0.693145751953125 - n * 1.428606765330187e-06
        var p: Float = 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        return p * Float(bitPattern: (t.bitPattern &- 0x4B40_0000 &+ 127) << 23)
    }

    // MARK: elementwise

    /// out[i] = a[i] + b[i]
    @inlinable public static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = a[i] + b[i] }
    }

    /// out[i] = a[i] * b[i]
    @inlinable public static func mul(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = a[i] * b[i] }
    }

    /// out[i] = a[i] * s
    @inlinable public static func scale(_ a: UnsafePointer<Float>, _ s: Float, _ out: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = a[i] * s }
    }

    /// x[i] = silu(x[i]) = x / (1 + e^-x), in place.
    @inlinable public static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { let v = x[i]; x[i] = v / (1 + fastExp(-v)) }
    }

    /// gate[i] = silu(gate[i]) * up[i] (the SwiGLU of Llama's MLP), in place in `gate`.
    /// Parallel over `Threads.count` threads for large counts.
    /// Allocates nothing (a decode step of a large batch runs it in parallel).
    public static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        var job = SwigluJob(gate: gate, up: up, count: count, chunks: max(1, min(Threads.count, count / (1 << 15))))
        let chunks = job.chunks
        withUnsafeMutablePointer(to: &job) { Threads.runChunks(chunks, context: UnsafeMutableRawPointer($0), swigluChunk) }
    }

    /// gate[i] = gelu_tanh(gate[i]) * up[i] (Gemma's GeGLU MLP), in place in `gate`.
    public static func geglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        geluTanh(gate, count: count)
        for i in 0..<count { gate[i] *= up[i] }
    }

    /// GELU, exact erf form: x * 0.5 * (1 + erf(x / sqrt 2)), in place.
    @inlinable public static func geluErf(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { let v = x[i]; x[i] = 0.5 * v * (1 + erff(v * 0.70710678118654752)) }
    }

    /// GELU, tanh approximation (GPT-2's `gelu_new`): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in place.
    @inlinable public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let v = x[i]
            x[i] = 0.5 * v * (1 + tanhf(0.7978845608028654 * (v + 0.044715 * v * v * v)))
        }
    }

    // MARK: norms

    /// RMSNorm over rows of length `n`: out = x / sqrt(mean(x^2) + eps) * weight.
    /// `x` and `out` may alias. `weight` is `[n]`.
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float,
                               _ out: UnsafeMutablePointer<Float>, rows: Int, n: Int) {
        let xb = UncheckedSendable(x), wb = UncheckedSendable(weight), ob = UncheckedSendable(out)
        Threads.parallelFor(rows, minChunk: max(1, (1 << 15) / max(1, n))) { range in
            rmsNormRows(xb.value, weight: wb.value, eps: eps, ob.value, rows: range, n: n)
        }
    }

    @inlinable static func rmsNormRows(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float,
                                       _ out: UnsafeMutablePointer<Float>, rows: Range<Int>, n: Int) {
        for r in rows {
            let xr = x + r * n, o = out + r * n
            var ss: Float = 0
            for i in 0..<n { ss += xr[i] * xr[i] }
            let inv = 1 / (ss / Float(n) + eps).squareRoot()
            for i in 0..<n { o[i] = xr[i] * inv * weight[i] }
        }
    }

    /// LayerNorm over rows of length `n`: out = (x - mean) / sqrt(var + eps) * weight + bias
    /// (biased variance, as PyTorch). `x` and `out` may alias.
    @inlinable public static func layerNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                            eps: Float, _ out: UnsafeMutablePointer<Float>, rows: Int, n: Int) {
        for r in 0..<rows {
            let xr = x + r * n, o = out + r * n
            var mean: Float = 0
            for i in 0..<n { mean += xr[i] }
            mean /= Float(n)
            var v: Float = 0
            for i in 0..<n { let d = xr[i] - mean; v += d * d }
            let inv = 1 / (v / Float(n) + eps).squareRoot()
            if let bias {
                for i in 0..<n { o[i] = (xr[i] - mean) * inv * weight[i] + bias[i] }
            } else {
                for i in 0..<n { o[i] = (xr[i] - mean) * inv * weight[i] }
            }
        }
    }

    // MARK: softmax

    /// Numerically stable softmax over each row of `x` `[rows, n]` (row stride `ld`), in place.
    /// With `causalOffset` set, row `r` keeps only columns `0 ... r + causalOffset`
    /// (the keys a query at position `r + causalOffset` may see); the rest become 0.
    /// `sink` (gpt-oss's attention sinks): one more logit in each row's denominator, attending to
    /// nothing (the row then sums to less than 1).
    public static func softmax(_ x: UnsafeMutablePointer<Float>, rows: Int, n: Int, ld: Int? = nil, causalOffset: Int? = nil, sink: Float? = nil) {
        let xb = UncheckedSendable(x)
        Threads.parallelFor(rows, minChunk: max(1, (1 << 14) / max(1, n))) { range in
            softmaxRows(xb.value, rows: range, n: n, ld: ld ?? n, causalOffset: causalOffset, sink: sink)
        }
    }

    static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Range<Int>, n: Int, ld stride: Int, causalOffset: Int?, sink: Float? = nil) {
        for r in rows {
            let row = x + r * stride
            let valid = causalOffset.map { min(n, max(0, r + $0 + 1)) } ?? n
            if valid == 0 {
                for i in 0..<n { row[i] = 0 }
                continue
            }
            if let sink {
                // as transformers' eager attention: the max over the row and the sink, the sink's term dropped after
                var top = sink
                for i in 0..<valid where row[i] > top { top = row[i] }
                var sum = expf(sink - top)
                for i in 0..<valid { row[i] = expf(row[i] - top); sum += row[i] }
                let inv = 1 / sum
                for i in 0..<valid { row[i] *= inv }
                for i in valid..<n { row[i] = 0 }
                continue
            }
            strata_softmax_row(row, valid)   // CStrataKernels: 16 lanes on AVX-512 (a scalar chain was 9% of a bf16 prefill)
            for i in valid..<n { row[i] = 0 }
        }
    }

    /// Before a causal softmax over `rows` of `n` scores (row r is the query at position
    /// `r + causalOffset`): `softcap` > 0 replaces each visible score s by `softcap * tanh(s /
    /// softcap)` (Gemma-2); `window` > 0 masks (-inf) the keys at or before position - window.
    /// Nothing to do when both are 0.
    public static func capAndWindow(_ x: UnsafeMutablePointer<Float>, rows: Int, n: Int, causalOffset: Int, softcap: Float, window: Int) {
        if softcap <= 0 && window <= 0 { return }
        for r in 0..<rows {
            let row = x + r * n, pos = r + causalOffset
            let valid = min(n, max(0, pos + 1))
            if softcap > 0 {
                let inv = 1 / softcap
                for i in 0..<valid { row[i] = tanhf(row[i] * inv) * softcap }
            }
            if window > 0 {
                for i in 0..<min(valid, max(0, pos - window + 1)) { row[i] = -.infinity }
            }
        }
    }

    // MARK: gather / reductions

    /// Copies rows `ids` of `table` (`[vocab, dim]`, any dtype) into `out` `[ids.count, dim]` as f32.
    /// Precondition: ids in range (callers validate token ids from input first).
    public static func embedding(table: UnsafeRawPointer, dtype: DType, vocab: Int, dim: Int,
                                 ids: UnsafeBufferPointer<Int32>, _ out: UnsafeMutablePointer<Float>) {
        for (r, id) in ids.enumerated() {
            precondition(id >= 0 && Int(id) < vocab, "embedding: token id \(id) outside vocab \(vocab)")
            HalfConversion.toF32(table + Int(id) * dtype.bytes(elements: dim), dtype: dtype, out + r * dim, count: dim)
        }
    }

    /// Index of the largest element (the first one on ties; NaN never wins).
    @inlinable public static func argmax(_ x: UnsafePointer<Float>, count: Int) -> Int {
        precondition(count > 0, "argmax of an empty vector")
        var best = 0
        var bv = -Float.infinity
        for i in 0..<count where x[i] > bv { bv = x[i]; best = i }
        return best
    }

    /// Indices of the `k` largest elements, largest first (ties: lower index first).
    public static func topK(_ x: UnsafePointer<Float>, count: Int, k: Int) -> [Int] {
        var heap: [(Float, Int)] = []
        topK(x, count: count, k: k, into: &heap)
        return heap.map { $0.1 }
    }

    /// The same into `heap` (its capacity kept: no allocation once it has held `k`): on return
    /// `heap` holds the `(value, index)` of the `k` largest (NaN skipped), largest first (ties:
    /// lower index first).
    public static func topK(_ x: UnsafePointer<Float>, count: Int, k: Int, into heap: inout [(Float, Int)]) {
        heap.removeAll(keepingCapacity: true)
        let k = min(k, count)
        if k <= 0 { return }
        heap.reserveCapacity(k)
        // a min-heap of the best k so far: the root is the worst kept
        func worse(_ a: (Float, Int), _ b: (Float, Int)) -> Bool { a.0 < b.0 || (a.0 == b.0 && a.1 > b.1) }
        func siftDown(_ i0: Int, _ n: Int) {
            var i = i0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && worse(heap[l], heap[m]) { m = l }
                if r < n && worse(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m); i = m
            }
        }
        for i in 0..<count {
            let v = x[i]
            if v.isNaN { continue }
            if heap.count < k {
                heap.append((v, i))
                var c = heap.count - 1
                while c > 0 {
                    let p = (c - 1) / 2
                    if worse(heap[c], heap[p]) { heap.swapAt(c, p); c = p } else { break }
                }
            } else if worse(heap[0], (v, i)) {
                heap[0] = (v, i)
                siftDown(0, heap.count)
            }
        }
        // heap sort in place: the worst goes to the end each round, so the best ends first
        var n = heap.count
        while n > 1 {
            heap.swapAt(0, n - 1)
            n -= 1
            siftDown(0, n)
        }
    }
}

/// What `Ops.swiglu`'s chunks read.
struct SwigluJob {
    let gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int, chunks: Int
}

/// One chunk of `Ops.swiglu` (a C-convention callback of the pool).
private func swigluChunk(_ ctx: UnsafeMutableRawPointer?, _ c: Int) {
    let j = ctx!.assumingMemoryBound(to: SwigluJob.self).pointee
    for i in (j.count * c / j.chunks)..<(j.count * (c + 1) / j.chunks) {
        let x = j.gate[i]
        j.gate[i] = x / (1 + Ops.fastExp(-x)) * j.up[i]
    }
}
