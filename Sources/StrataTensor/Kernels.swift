import Foundation
import Synchronization
import CStrataKernels

/// The kernel wrapper: Strata's only door to its SIMD kernels (`CStrataKernels`).
///
/// **Few-row linear layers.** `y[M, N] (+)= x[M, K] * W^T` with `W` stored `[N, K]` row-major (the
/// HF layout, as in `BLAS`), in f32, f16 or bf16, activations and accumulation in f32: each weight
/// byte is read once for all M rows (the C kernel `strata_linear` multiplies each block of weight
/// rows against every row of x while it is in L1; docs/kernels.md). This is the decode step: one
/// row per sequence, bound by the bytes of weights read. Output rows are split across the worker
/// pool. Above `maxRows(dtype:)` rows a GEMM is compute-bound and goes to OpenBLAS.
///
/// **Instruction sets.** Each kernel exists for AVX-512 (F/BW/VL), AVX2+FMA+F16C and plain C,
/// all compiled into the package with `__attribute__((target))`; the best one the CPU has is
/// chosen at run time, so a plain `swift build` gets the speed. `Kernels.use(_:)` or the
/// environment variable `STRATA_KERNELS=portable|avx2|avx512` forces one.
///
/// **The pool.** `Threads.parallelFor` and the linear kernel run on one pool of workers that stay
/// ready between calls (they spin for `setSpin(microseconds:)`, 300 us by default, after a job, then sleep), so the projections
/// of a decode step do not pay a thread wake-up each.
public enum Kernels {
    /// An instruction-set path of the kernels.
    public enum Path: Int32, CaseIterable, Sendable, CustomStringConvertible {
        case portable = 0, avx2 = 1, avx512 = 2
        public var description: String {
            switch self {
            case .portable: return "portable"
            case .avx2: return "avx2"
            case .avx512: return "avx512"
            }
        }
        /// Whether this CPU can run the path.
        public var isSupported: Bool { strata_isa_supported(rawValue) != 0 }
    }

    /// Every path this CPU can run, portable first.
    public static var supportedPaths: [Path] { Path.allCases.filter(\.isSupported) }
    /// The best path this CPU supports.
    public static var bestPath: Path { Path(rawValue: strata_isa_best()) ?? .portable }
    /// The path in use.
    public static var path: Path { Path(rawValue: strata_kernels_isa()) ?? .portable }

    /// Forces a path for every later kernel call; false (and no change) when the CPU cannot run it.
    @discardableResult
    public static func use(_ p: Path) -> Bool { strata_kernels_set_isa(p.rawValue) == 0 }

    /// The most rows the few-row kernel takes for weights of `dtype`; more go to OpenBLAS sgemm.
    /// (Measured crossovers: docs/kernels.md, "How the kernel walks the weights"; docs/benchmarks.md,
    /// "Few-row kernels vs OpenBLAS".)
    public static func maxRows(dtype: DType) -> Int {
        if dtype.isQuantized {
            // the generic kernels (one weight row unpacked, every x row against it) to 16 rows;
            // more are dequantized for sgemm
            guard hasOwnKernels(dtype) else { return maxRowsQuantized }
            // the 8-bit kernel takes more rows in slices of its own limit where no bf16 GEMM
            // takes them (prompt chunks of a served request, batch steps of 17-64 sequences); on
            // the AVX2 kernel Q4_0, Q4_K and Q6_K take every row count that way (a prompt's
            // slices of 16 beat dequantizing the weights for sgemm; Q8_0 does not)
            guard activations == .q8 && q8FastSupported && !bf16GEMMSupported else { return maxRowsQuantized }
            return path == .avx2 && dtype != .q8_0 ? Int.max : maxRowsQuantizedSliced
        }
        return path == .avx512 && !blasSGEMMHasAVX512 ? maxRowsOverAVX2BLAS : maxRowsFloat
    }
    // f32 and 16-bit to 32 rows since the K-tiled walk (bench-linear f32: 16 rows 8.1 ms per
    // layer vs OpenBLAS 13.2, 24 rows 11.5 vs 25.4, 32 rows 16.0 vs 21.2)
    static let maxRowsFloat = 32
    // Against an OpenBLAS on its AVX2 kernels (a Haswell or Zen core name, as this project's
    // hosts pin with OPENBLAS_CORETYPE=Haswell), the AVX-512 kernel in 32-row passes wins to 64
    // rows (batch steps of 33-64 sequences): bench-linear, TinyLlama's layer, 2 threads, 48 rows
    // f32 15.2 ms vs 25.5, bf16 12.9 vs 28.4; 64 rows f32 18.5 vs 32.0, bf16 17.7 vs 38.1. Against
    // OpenBLAS's AVX-512 sgemm (368-413 GFLOP/s on the same host, docs/kernels.md "What bounds
    // the exact paths on this host") the kernel's 280-330 GFLOP/s (bench-linear at 48-64 rows)
    // would lose, so 32 stays there.
    static let maxRowsOverAVX2BLAS = 64
    static let maxRowsQuantized = Int(STRATA_Q8_MAX_ROWS)  // the 8-bit path's row limit
    // Past it, slices of 16 rows, each reading the weights again, against dequantizing them to f32
    // for sgemm: measured in docs/benchmarks.md, "Tenth session"; past 64 rows on AVX2 (pp512 by
    // type, "Eleventh session")
    static let maxRowsQuantizedSliced = 64
    /// Whether OpenBLAS's sgemm runs AVX-512 kernels, from its core name: false only for the
    /// cores known to run AVX2 or older kernels (an unknown name keeps the cautious 32 rows).
    static let blasSGEMMHasAVX512 = !sgemmCoreIsAVX2OrOlder(BLAS.coreName)
    static func sgemmCoreIsAVX2OrOlder(_ core: String) -> Bool {
        ["haswell", "zen", "sandybridge", "nehalem", "core2", "penryn", "dunnington", "prescott", "atom",
         "barcelona", "bulldozer", "piledriver", "steamroller", "excavator", "bobcat", "opteron"]
            .contains(core.lowercased())
    }

    /// Each dtype's number in the kernels (`STRATA_W_*`), found by its name in the traits table
    /// (qtypes.c), in `DType.allCases` order. A case without a row there is a programming error
    /// that every test run meets at once.
    static let codes: [Int32] = DType.allCases.map { d in
        for i in 0..<Int32(STRATA_W_COUNT) where strata_qtype_name(i).map({ String(cString: $0) }) == d.rawValue { return i }
        fatalError("DType.\(d) has no row in the kernels' traits table (CStrataKernels/qtypes.c)")
    }

    @inline(__always)
    static func code(_ d: DType) -> Int32 { codes[d.index] }

    /// A dtype's block (weights, bytes) from the traits table.
    static func block(of d: DType) -> (elements: Int, bytes: Int) {
        (strata_qblock_elements(code(d)), strata_qblock_bytes(code(d)))
    }

    /// Whether `dtype` runs kernels written for it, not the generic ones (quant_generic.c).
    public static func hasOwnKernels(_ dtype: DType) -> Bool { strata_qtype_specialized(code(dtype)) != 0 }

    /// The 8-bit path quantizes x per this many values for weights of `dtype` (ggml's vec_dot_type:
    /// 32 as Q8_0, 256 as Q8_K).
    public static func q8XBlock(_ dtype: DType) -> Int { strata_qtype_x_block(code(dtype)) }

    /// How the quantized linear treats activations.
    public enum Activations: String, CaseIterable, Sendable {
        /// Exact: every weight dequantized to f32, f32 products and sums (the reference).
        case f32
        /// The fast mode. Up to 16 rows (decode): llama.cpp's arithmetic, each x row quantized to
        /// 8 bits per weight block, integer dot products (AVX-512 VNNI, or AVX2's vpmaddubsw and
        /// vpmaddwd), scaled in f32. More rows
        /// (prefill), where the CPU has AVX-512 BF16: x and the dequantized weights rounded to bf16,
        /// products summed in f32. Logits differ from the exact ones by those roundings
        /// (docs/kernels.md gives the measured error).
        case q8
    }

    /// The activations mode of every later quantized linear (default: `STRATA_ACTIVATIONS`, else f32).
    public static var activations: Activations {
        get { strata_activations() == Int32(STRATA_ACT_Q8) ? .q8 : .f32 }
        set { strata_set_activations(newValue == .q8 ? Int32(STRATA_ACT_Q8) : Int32(STRATA_ACT_F32)) }
    }

    /// The 8-bit products' peak on `path` (default: the path in use), in multiply-adds per second
    /// over the pool's threads (the AVX2 kernel's inner instructions from registers, about
    /// `seconds` long); 0 where no AVX2 8-bit kernel runs (portable; AVX-512 VNNI is not measured).
    public static func q8Peak(path p: Path? = nil, seconds: Double = 0.2) -> Double { strata_q8_peak((p ?? path).rawValue, seconds) }

    /// Whether this CPU runs the 8-bit path's VNNI kernel.
    public static var q8VNNISupported: Bool { strata_q8_vnni_supported() != 0 }

    /// Whether the 8-bit path runs a SIMD kernel on the path in use (VNNI on AVX-512, vpmaddubsw
    /// on AVX2), not its portable definition: where it does, it is the CLI's default mode.
    public static var q8FastSupported: Bool { strata_q8_fast_supported() != 0 }

    /// Output rows `outputRows` of the 8-bit-activation product on `path` on the calling thread
    /// (tests): avx512 runs the VNNI kernel when the CPU has it (else the AVX2 kernel), avx2 the
    /// AVX2 kernel, portable the definition.
    public static func linearRowsQ8(path p: Path, weight: UnsafeRawPointer, dtype: DType, outFeatures n: Int, inFeatures k: Int,
                                    x: UnsafePointer<Float>, rows m: Int, ldx: Int? = nil,
                                    y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false) {
        precondition(p.isSupported && dtype.isQuantized && m > 0, "Kernels.linearRowsQ8: \(p) \(dtype) m=\(m)")
        var a = args(weight, dtype, n, k, x, m, ldx, y, ldy, accumulate)
        strata_qlinear_q8_rows_isa(p.rawValue, &a, 0, n)
    }

    /// `x[0..<n]` <- softmax in place on `path` (tests; the engine's softmax uses the path in use).
    public static func softmaxRow(path p: Path, _ x: UnsafeMutablePointer<Float>, count n: Int) {
        strata_softmax_row_isa(p.rawValue, x, n)
    }

    /// One query head of a decode step against `n` cached key rows (stride `ldk` floats):
    /// `scores[j] = scale * q . k_j` over `d` floats, on `path` (default: the path in use).
    @inline(__always)
    public static func attentionScores(path p: Path? = nil, q: UnsafePointer<Float>, k: UnsafePointer<Float>, ldk: Int, keys n: Int,
                                       headDim d: Int, scale: Float, scores: UnsafeMutablePointer<Float>) {
        if let p { strata_attn_scores_isa(p.rawValue, q, k, ldk, n, d, scale, scores) } else { strata_attn_scores(q, k, ldk, n, d, scale, scores) }
    }

    /// `out[i] (+)= sum_j p[j] v_j[i]` for `i < d` over `n` value rows (stride `ldv` floats), on
    /// `path` (default: the path in use); without `accumulate` out is overwritten.
    @inline(__always)
    public static func attentionValues(path p: Path? = nil, weights: UnsafePointer<Float>, v: UnsafePointer<Float>, ldv: Int, keys n: Int,
                                       headDim d: Int, out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if let p { strata_attn_values_isa(p.rawValue, weights, v, ldv, n, d, out, accumulate ? 1 : 0) }
        else { strata_attn_values(weights, v, ldv, n, d, out, accumulate ? 1 : 0) }
    }

    /// Decode attention of one query row for the `group` query heads sharing one kv head (`q`,
    /// `out`: `[group, headDim]`) over keys `first ..< keys` of K/V stored as `type` (one of
    /// `DType.kvTypes`), a row of `headDim` values per key: key j's row at `k + j * ld` bytes
    /// without a table, else at `k + table[j / block] * blockStride + (j % block) * ld` (the paged
    /// pool: one kv head's rows of a block together). V likewise from `v`, rows `ldv` apart. Online softmax over
    /// tiles of keys widened into L1 once for every head of the group (attention.c). `softcap` > 0:
    /// Gemma-2's tanh capping. On `path` (default: the path in use).
    @inline(__always)
    public static func attentionDecode(path p: Path? = nil, q: UnsafePointer<Float>, group: Int, headDim d: Int,
                                       k: UnsafeRawPointer, v: UnsafeRawPointer, type: DType, ld: Int, ldv: Int,
                                       table: UnsafePointer<Int>?, block: Int, blockStride: Int, first: Int, keys n: Int,
                                       scale: Float, softcap: Float, sinks: UnsafePointer<Float>? = nil, out: UnsafeMutablePointer<Float>) {
        var a = strata_attn_decode_args(q: q, k: k, v: v, ld: ld, ldv: ldv, type: code(type), table: table, block: block, block_stride: blockStride,
                                        first: first, n: n, group: group, d: d, scale: scale, softcap: softcap, out: out, sinks: sinks)
        if let p { strata_attn_decode_isa(p.rawValue, &a) } else { strata_attn_decode(&a) }
    }

    /// Keys `first ..< keys` of one kv head stored as `type`, addressed from `src` as in
    /// `attentionDecode`, widened to f32 rows of `headDim` floats at `dst`: what a prompt chunk's
    /// sgemm attention reads.
    @inline(__always)
    public static func kvGather(path p: Path? = nil, type: DType, src: UnsafeRawPointer, ld: Int, table: UnsafePointer<Int>?, block: Int,
                                blockStride: Int, first: Int, keys n: Int, headDim d: Int, dst: UnsafeMutablePointer<Float>) {
        strata_kv_gather((p ?? path).rawValue, code(type), src, ld, table, block, blockStride, first, n, d, dst)
    }

    /// Whether this CPU runs the bf16 GEMM (AVX-512 BF16) of fast prompt processing.
    public static var bf16GEMMSupported: Bool { strata_bf16_gemm_supported() != 0 }

    /// Linears of many rows over f16 and bf16 weights: prompt processing, and batched decode steps
    /// of `bf16ProductsMinRows` or more sequences.
    public enum Prefill16: String, CaseIterable, Sendable {
        /// Exact (the default): bands of the weight widened to f32, OpenBLAS sgemm.
        case exact
        /// x rounded to bf16 (f16 weights too), products summed in f32 with AVX-512 BF16
        /// (`gemmBF16`), bf16 weights multiplied where they lie: llama.cpp's arithmetic for bf16
        /// models. Logits differ from the exact ones by that rounding (docs/kernels.md).
        case bf16
    }

    private static let prefill16Mode = Atomic<Int>(ProcessInfo.processInfo.environment["STRATA_PREFILL16"] == "bf16" ? 1 : 0)

    /// The 16-bit prefill mode of every later linear (default: `STRATA_PREFILL16`, else exact).
    public static var prefill16: Prefill16 {
        get { prefill16Mode.load(ordering: .relaxed) == 1 ? .bf16 : .exact }
        set { prefill16Mode.store(newValue == .bf16 ? 1 : 0, ordering: .relaxed) }
    }

    /// Whether a many-row linear over `dtype` weights takes the bf16-product GEMM in the modes
    /// now set: quantized weights in the q8 mode, f16/bf16 weights with `prefill16 == .bf16`,
    /// on a CPU with AVX-512 BF16 (the engine also needs K a multiple of 32).
    public static func prefillUsesBF16Products(dtype: DType) -> Bool {
        guard dtype != .f32, bf16GEMMSupported else { return false }
        return dtype.isQuantized ? activations == .q8 : prefill16 == .bf16
    }

    /// The fewest rows a linear over `dtype` weights sends to the bf16-product GEMM when
    /// `prefillUsesBF16Products(dtype:)`: 16-bit weights from 9 rows (a batched decode step of 9+
    /// sequences too: bench-linear `--prefill16 bf16` on the TinyLlama layer, 16 rows 4.1 ms against
    /// 6.4 for the exact kernel, which is bound by f32 FMAs there; 8 rows even), quantized weights
    /// above the 8-bit decode kernel's rows.
    public static func bf16ProductsMinRows(dtype: DType) -> Int {
        dtype.isQuantized ? maxRowsQuantized + 1 : 9
    }

    /// Many rows: the product with bf16-rounded x and weights (AVX-512 BF16): bf16 weights used
    /// in place, f16 weights rounded to bf16, quantized weights dequantized through `scratch`
    /// (`scratchElements` floats) a band at a time. False (nothing done) when the CPU or the
    /// shapes do not allow it (f32 weights, K not a multiple of 32).
    public static func gemmBF16(weight: UnsafeRawPointer, dtype: DType, outFeatures n: Int, inFeatures k: Int,
                                x: UnsafePointer<Float>, rows m: Int, ldx: Int? = nil, y: UnsafeMutablePointer<Float>, ldy: Int? = nil,
                                accumulate: Bool = false, scratch: UnsafeMutablePointer<Float>, scratchElements: Int) -> Bool {
        guard dtype != .f32, scratchElements >= k else { return false }
        var a = args(weight, dtype, n, k, x, m, ldx, y, ldy, accumulate)
        return strata_qlinear_bf16_gemm(&a, scratch, scratchElements / k) == 0
    }

    /// `count` weights of quantized `dtype` (a multiple of its block) at `src` into f32 `dst`.
    public static func dequantize(_ src: UnsafeRawPointer, dtype: DType, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        precondition(count % dtype.blockElements == 0, "dequantize: \(count) weights of \(dtype) is not whole blocks")
        strata_dequantize(code(dtype), src, dst, count)
    }

    /// `y[r, j] (+)= sum_i x[r, i] * W[j, i]` for `r < rows`, `j < outFeatures`, over the pool's
    /// threads. W `[outFeatures, inFeatures]` row-major in `dtype`; x rows `ldx` floats apart,
    /// y rows `ldy` floats apart.
    /// `activations` (quantized weights): nil for the process-wide `Kernels.activations`.
    public static func linear(weight: UnsafeRawPointer, dtype: DType, outFeatures n: Int, inFeatures k: Int,
                              x: UnsafePointer<Float>, rows m: Int, ldx: Int? = nil,
                              y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false, activations: Activations? = nil) {
        var a = args(weight, dtype, n, k, x, m, ldx, y, ldy, accumulate)
        if let act = activations { a.act = act == .q8 ? Int32(STRATA_ACT_Q8) : Int32(STRATA_ACT_F32) }
        strata_linear(&a)
    }

    /// One member of `linearGroup`: a weight `[outFeatures, inFeatures]` and its output rows.
    public struct GroupMember {
        public let weight: UnsafeRawPointer, dtype: DType, outFeatures: Int, y: UnsafeMutablePointer<Float>
        public init(weight: UnsafeRawPointer, dtype: DType, outFeatures: Int, y: UnsafeMutablePointer<Float>) {
            self.weight = weight; self.dtype = dtype; self.outFeatures = outFeatures; self.y = y
        }
    }

    /// Two or three linears over the same x (a layer's q, k and v; gate and up) as one job on
    /// the pool (`strata_linear_group`): `member.y[r, j] = sum_i x[r, i] * W[j, i]`, y rows
    /// `outFeatures` apart. Nothing allocated. `activations` (quantized weights): nil for the
    /// process-wide `Kernels.activations`.
    public static func linearGroup(x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int, ldx: Int? = nil,
                                   _ a: GroupMember, _ b: GroupMember, _ c: GroupMember? = nil, activations: Activations? = nil) {
        let c3 = c ?? b
        var t = (args(a.weight, a.dtype, a.outFeatures, k, x, m, ldx, a.y, nil, false),
                 args(b.weight, b.dtype, b.outFeatures, k, x, m, ldx, b.y, nil, false),
                 args(c3.weight, c3.dtype, c3.outFeatures, k, x, m, ldx, c3.y, nil, false))
        if let act = activations {
            let code = act == .q8 ? Int32(STRATA_ACT_Q8) : Int32(STRATA_ACT_F32)
            t.0.act = code; t.1.act = code; t.2.act = code
        }
        withUnsafeMutablePointer(to: &t) { p in
            p.withMemoryRebound(to: strata_linear_args.self, capacity: 3) { strata_linear_group($0, c == nil ? 2 : 3) }
        }
    }

    /// Linears each over its own x (a mixture's experts: every chosen expert's gate and up, then
    /// every expert's down), run as one job on the pool (`strata_linear_batch`): a thread takes a
    /// member's output rows whole, so k small matrices cost one wait, not k. Every member must be
    /// one the few-row kernel takes (`maxRows(dtype:)` rows at most). The members' arguments live
    /// in storage made once (`capacity`); `run` keeps them for another call until `removeAll`.
    public final class LinearBatch {
        private let args: UnsafeMutablePointer<strata_linear_args>
        public let capacity: Int
        public private(set) var count = 0
        private let act: Int32
        /// `activations` (quantized weights): nil for the process-wide `Kernels.activations`.
        public init(capacity: Int, activations: Activations? = nil) {
            self.capacity = max(1, capacity)
            args = .allocate(capacity: self.capacity)
            act = activations.map { $0 == .q8 ? Int32(STRATA_ACT_Q8) : Int32(STRATA_ACT_F32) } ?? -1
        }
        deinit { args.deallocate() }

        /// Adds `y[r, j] = sum_i x[r, i] * W[j, i]` (`rows` x rows, `inFeatures` floats each, y rows
        /// `outFeatures` apart). A batch at capacity runs first.
        public func append(weight: UnsafeRawPointer, dtype: DType, outFeatures n: Int, inFeatures k: Int,
                           x: UnsafePointer<Float>, rows m: Int, y: UnsafeMutablePointer<Float>) {
            precondition(m <= Kernels.maxRows(dtype: dtype), "Kernels.LinearBatch: \(m) rows of \(dtype) past the few-row kernel's limit")
            if count == capacity { run(); removeAll() }
            args[count] = Kernels.args(weight, dtype, n, k, x, m, nil, y, nil, false)
            args[count].act = act
            count += 1
        }
        public func run() { if count > 0 { strata_linear_batch(args, Int32(count)) } }
        public func removeAll() { count = 0 }
    }

    /// Output rows `outputRows` (default all) of the same product on the calling thread, on a
    /// given path (tests and benchmarks of each path).
    public static func linearRows(path p: Path, weight: UnsafeRawPointer, dtype: DType, outFeatures n: Int, inFeatures k: Int,
                                  x: UnsafePointer<Float>, rows m: Int, ldx: Int? = nil,
                                  y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false, outputRows: Range<Int>? = nil) {
        precondition(p.isSupported, "Kernels.linearRows: \(p) not supported on this CPU")
        var a = args(weight, dtype, n, k, x, m, ldx, y, ldy, accumulate)
        let r = outputRows ?? 0..<n
        strata_linear_rows_isa(p.rawValue, &a, r.lowerBound, r.upperBound)
    }

    /// The C call's arguments, shapes checked (a wrong shape here is a caller's bug).
    fileprivate static func args(_ w: UnsafeRawPointer, _ dtype: DType, _ n: Int, _ k: Int, _ x: UnsafePointer<Float>, _ m: Int,
                             _ ldx: Int?, _ y: UnsafeMutablePointer<Float>, _ ldy: Int?, _ accumulate: Bool) -> strata_linear_args {
        let lx = ldx ?? k, ly = ldy ?? n
        precondition(n >= 0 && k >= 0 && m >= 0 && lx >= k && ly >= n && k % dtype.blockElements == 0,
                     "Kernels.linear: n=\(n) k=\(k) m=\(m) ldx=\(lx) ldy=\(ly) \(dtype)")
        return strata_linear_args(w: w, wtype: code(dtype), accumulate: accumulate ? 1 : 0, n: n, k: k, x: x, ldx: lx, m: m, y: y, ldy: ly, act: -1)
    }

    /// Sum of `count` floats read with the widest loads of `path`, prefetching `prefetchBytes`
    /// ahead when > 0 (the memory-read kernel; the sum keeps the reads from being optimized away).
    public static func readSum(path p: Path, _ ptr: UnsafePointer<Float>, count: Int, prefetchBytes: Int = 0) -> Float {
        strata_read_sum(p.rawValue, ptr, count, prefetchBytes)
    }

    // MARK: the pool

    /// Sets the pool's threads per job, the caller included (`Threads.set` calls this).
    static func setPoolThreads(_ n: Int) { strata_pool_set_threads(Int32(clamping: n)) }

    /// Microseconds a worker spins after a job before it sleeps (default 300).
    public static func setSpin(microseconds: Int) { strata_pool_set_spin_us(microseconds) }

    /// Jobs that had to wake a sleeping worker since the process started.
    public static var poolSleepWakeups: Int { strata_pool_sleep_wakeups() }

    /// Runs `body(chunk)` for `chunk in 0..<chunks` on the pool, the caller taking part; returns
    /// when all are done. Nested or concurrent calls run inline on the caller.
    static func runPool(chunks: Int, _ body: (Int) -> Void) {
        if chunks <= 0 { return }
        if chunks == 1 { body(0); return }
        withoutActuallyEscaping(body) { esc in
            var job = PoolJob(body: esc)
            withUnsafeMutablePointer(to: &job) { p in
                strata_pool_run({ ctx, c in
                    ctx!.assumingMemoryBound(to: PoolJob.self).pointee.body(c)
                }, UnsafeMutableRawPointer(p), chunks)
            }
        }
    }

    private struct PoolJob { let body: (Int) -> Void }

    /// Runs `fn(context, chunk)` for `chunk in 0..<chunks` on the pool, the caller taking part.
    /// No Swift closure: nothing is allocated (the closure form above allocates its escaping
    /// wrapper once per call), so a decode step's parallel loops can use it.
    static func runPool(chunks: Int, context: UnsafeMutableRawPointer, _ fn: @convention(c) (UnsafeMutableRawPointer?, Int) -> Void) {
        if chunks <= 0 { return }
        if chunks == 1 { fn(context, 0); return }
        strata_pool_run(fn, context, chunks)
    }
}
