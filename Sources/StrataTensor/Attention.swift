/// Causal scaled-dot-product attention with grouped-query heads.
///
/// Layouts (row-major, row strides given so heads can live inside wider rows):
/// - `q`   `[T, heads * headDim]`: the T query rows, at absolute positions `start ..< start + T`;
/// - `k`,`v` `[S, kvHeads * headDim]`: keys/values of positions `0 ..< S` (S >= start + T);
/// - `out` `[T, heads * headDim]`.
/// Query head `h` reads kv head `h / (heads / kvHeads)`.
/// `scores` is caller-owned scratch of at least `T * S` floats for T > 1 (no allocation here);
/// one query row needs none.
///
/// T > 1, per head: `scores = scale * Q_h K_h^T` (one `cblas_sgemm`), causal softmax,
/// `out_h = P V_h` (another). T == 1: the kernel module's grouped decode attention
/// (`Kernels.attentionDecode`, online softmax), the kv heads split over the pool.
public enum Attention {
    public static func causal(
        q: UnsafePointer<Float>, ldq: Int,
        k: UnsafePointer<Float>, ldk: Int,
        v: UnsafePointer<Float>, ldv: Int,
        out: UnsafeMutablePointer<Float>, ldo: Int,
        tokens t: Int, start: Int, keys s: Int,
        heads: Int, kvHeads: Int, headDim d: Int, scale: Float,
        scores: UnsafeMutablePointer<Float>, softcap: Float = 0, window: Int = 0, sinks: UnsafePointer<Float>? = nil
    ) {
        precondition(heads % kvHeads == 0, "attention: \(heads) heads not a multiple of \(kvHeads) kv heads")
        precondition(s >= start + t, "attention: \(s) keys for queries up to position \(start + t - 1)")
        let group = heads / kvHeads
        if t == 1 {
            // the query at position `start` sees keys 0 ... start
            decode(q: q, k: UnsafeRawPointer(k), v: UnsafeRawPointer(v), type: .f32, ld: ldk * 4, ldv: ldv * 4, headStride: d * 4, out: out, keys: start + 1,
                   heads: heads, kvHeads: kvHeads, headDim: d, scale: scale, softcap: softcap, window: window, sinks: sinks)
            return
        }
        for h in 0..<heads {
            let kvh = h / group
            let qh = q + h * d, kh = k + kvh * d, vh = v + kvh * d, oh = out + h * d
            BLAS.sgemm(transB: true, m: t, n: s, k: d, alpha: scale, a: qh, lda: ldq, b: kh, ldb: ldk, c: scores, ldc: s)
            Ops.capAndWindow(scores, rows: t, n: s, causalOffset: start, softcap: softcap, window: window)
            Ops.softmax(scores, rows: t, n: s, causalOffset: start, sink: sinks.map { $0[h] })
            BLAS.sgemm(m: t, n: d, k: s, a: scores, lda: s, b: vh, ldb: ldv, c: oh, ldc: ldo)
        }
    }

    /// One query row (decode) over `keys` contiguous K/V rows stored as `type` (`DType.kvTypes`):
    /// kv head g's row j at `k + g * headStride + j * ld` bytes (V: `ldv`): row-major rows of all
    /// heads (headStride one head's bytes) or a head's rows together (headStride its rows' bytes).
    /// The kernel module's grouped decode attention, one kv head
    /// (and its query heads) per chunk of the pool. Not OpenBLAS's sgemv: past about 144 keys it
    /// wakes OpenBLAS's threads for every head of every layer.
    public static func decode(q: UnsafePointer<Float>, k: UnsafeRawPointer, v: UnsafeRawPointer, type: DType, ld: Int, ldv: Int,
                              headStride: Int, out: UnsafeMutablePointer<Float>, keys: Int, heads: Int, kvHeads: Int, headDim d: Int, scale: Float,
                              softcap: Float = 0, window: Int = 0, sinks: UnsafePointer<Float>? = nil) {
        precondition(heads % kvHeads == 0, "attention: \(heads) heads not a multiple of \(kvHeads) kv heads")
        var job = DecodeJob(q: q, k: k, v: v, type: type, ld: ld, ldv: ldv, headStride: headStride, out: out, keys: keys, group: heads / kvHeads,
                            headDim: d, scale: scale, softcap: softcap, window: window, sinks: sinks)
        if kvHeads == 1 || Threads.count == 1 { for g in 0..<kvHeads { job.run(kvHead: g) }; return }
        withUnsafeMutablePointer(to: &job) { jp in
            // a C-convention function and a context on the stack: nothing allocated per step
            Threads.runChunks(kvHeads, context: UnsafeMutableRawPointer(jp)) { ctx, chunk in
                ctx!.assumingMemoryBound(to: DecodeJob.self).pointee.run(kvHead: chunk)
            }
        }
    }

    /// One query row: kv head `g` and its query heads per call.
    struct DecodeJob {
        let q: UnsafePointer<Float>, k: UnsafeRawPointer, v: UnsafeRawPointer, type: DType, ld: Int, ldv: Int, headStride: Int
        let out: UnsafeMutablePointer<Float>
        let keys: Int, group: Int, headDim: Int, scale: Float, softcap: Float, window: Int
        /// one logit per query head (nil: none)
        let sinks: UnsafePointer<Float>?

        func run(kvHead g: Int) {
            let d = headDim, first = window > 0 ? max(0, keys - window) : 0, off = g * headStride
            Kernels.attentionDecode(q: q + g * group * d, group: group, headDim: d, k: k + off, v: v + off, type: type, ld: ld, ldv: ldv,
                                    table: nil, block: 1, blockStride: 0, first: first, keys: keys, scale: scale, softcap: softcap,
                                    sinks: sinks.map { $0 + g * group }, out: out + g * group * d)
        }
    }
}
