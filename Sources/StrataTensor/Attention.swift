/// Causal scaled-dot-product attention with grouped-query heads.
///
/// Layouts (row-major, row strides given so heads can live inside wider rows):
/// - `q`   `[T, heads * headDim]`: the T query rows, at absolute positions `start ..< start + T`;
/// - `k`,`v` `[S, kvHeads * headDim]`: keys/values of positions `0 ..< S` (S >= start + T);
/// - `out` `[T, heads * headDim]`.
/// Query head `h` reads kv head `h / (heads / kvHeads)`.
/// `scores` is caller-owned scratch of at least `T * S` floats (no allocation here); for one
/// query row, `scoresCount` floats (its size) let the heads run in parallel, a row of S per chunk.
///
/// T > 1, per head: `scores = scale * Q_h K_h^T` (one `cblas_sgemm`), causal softmax,
/// `out_h = P V_h` (another). T == 1: the same in the kernel module's loops (`DecodeJob`,
/// `Kernels.attentionScores` / `attentionValues`).
public enum Attention {
    public static func causal(
        q: UnsafePointer<Float>, ldq: Int,
        k: UnsafePointer<Float>, ldk: Int,
        v: UnsafePointer<Float>, ldv: Int,
        out: UnsafeMutablePointer<Float>, ldo: Int,
        tokens t: Int, start: Int, keys s: Int,
        heads: Int, kvHeads: Int, headDim d: Int, scale: Float,
        scores: UnsafeMutablePointer<Float>, scoresCount: Int = 0, softcap: Float = 0, window: Int = 0
    ) {
        precondition(heads % kvHeads == 0, "attention: \(heads) heads not a multiple of \(kvHeads) kv heads")
        precondition(s >= start + t, "attention: \(s) keys for queries up to position \(start + t - 1)")
        let group = heads / kvHeads
        if t == 1 {
            // one query row (decode): Strata's own loops, heads split over the pool when the
            // scratch holds a row of scores per chunk. Not OpenBLAS's sgemv: past about 144 keys
            // it wakes OpenBLAS's threads for every head of every layer.
            let chunks = max(1, min(Threads.count, heads, scoresCount / max(1, s)))
            var job = DecodeJob(q: q, k: k, ldk: ldk, v: v, ldv: ldv, out: out, keys: s, start: start, heads: heads, group: group,
                                headDim: d, scale: scale, scores: scores, softcap: softcap, window: window, chunks: chunks)
            if chunks == 1 { job.run(chunk: 0); return }
            withUnsafeMutablePointer(to: &job) { jp in
                // a C-convention function and a context on the stack: nothing allocated per step
                Threads.runChunks(chunks, context: UnsafeMutableRawPointer(jp)) { ctx, chunk in
                    ctx!.assumingMemoryBound(to: DecodeJob.self).pointee.run(chunk: chunk)
                }
            }
            return
        }
        for h in 0..<heads {
            let kvh = h / group
            let qh = q + h * d, kh = k + kvh * d, vh = v + kvh * d, oh = out + h * d
            BLAS.sgemm(transB: true, m: t, n: s, k: d, alpha: scale, a: qh, lda: ldq, b: kh, ldb: ldk, c: scores, ldc: s)
            Ops.capAndWindow(scores, rows: t, n: s, causalOffset: start, softcap: softcap, window: window)
            Ops.softmax(scores, rows: t, n: s, causalOffset: start)
            BLAS.sgemm(m: t, n: d, k: s, a: scores, lda: s, b: vh, ldb: ldv, c: oh, ldc: ldo)
        }
    }

    /// One query row over all heads, chunk `c` of `chunks` taking a contiguous run of heads and
    /// its own row of scores.
    struct DecodeJob {
        let q: UnsafePointer<Float>, k: UnsafePointer<Float>, ldk: Int, v: UnsafePointer<Float>, ldv: Int
        let out: UnsafeMutablePointer<Float>
        let keys: Int, start: Int, heads: Int, group: Int, headDim: Int, scale: Float
        let scores: UnsafeMutablePointer<Float>, softcap: Float, window: Int, chunks: Int

        func run(chunk c: Int) {
            let s = keys, d = headDim, sc = scores + c * s
            for h in (heads * c / chunks)..<(heads * (c + 1) / chunks) {
                let kvh = h / group
                let qh = q + h * d, kh = k + kvh * d, vh = v + kvh * d, oh = out + h * d
                Kernels.attentionScores(q: qh, k: kh, ldk: ldk, keys: s, headDim: d, scale: scale, scores: sc)
                Ops.capAndWindow(sc, rows: 1, n: s, causalOffset: start, softcap: softcap, window: window)
                Ops.softmaxRows(sc, rows: 0..<1, n: s, ld: s, causalOffset: start)
                Kernels.attentionValues(weights: sc, v: vh, ldv: ldv, keys: s, headDim: d, out: oh, accumulate: false)
            }
        }
    }
}
