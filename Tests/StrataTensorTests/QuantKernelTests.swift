import StrataTestSupport
import Testing
import Foundation
@testable import StrataTensor

// The quantized kernels (ggml's Q8_0, Q4_0, Q4_K, Q6_K blocks) against a naive dequantizer written
// here from ggml's block definitions, element by element, and a Double-accumulated dot product.
// (The GGUF model tests check the same layouts against gguf-py's own dequantization.)

/// Random but well-formed blocks: small positive f16 scales, random codes and sub-scales.
func randomBlocks(_ dtype: DType, rows n: Int, k: Int, seed: UInt64) -> [UInt8] {
    var rng = TestRNG(seed)
    let nb = n * k / dtype.blockElements
    var out = [UInt8]()
    out.reserveCapacity(nb * dtype.blockBytes)
    func f16(_ v: Float) -> [UInt8] { let h = HalfConversion.f32ToF16(v); return [UInt8(h & 0xFF), UInt8(h >> 8)] }
    func bytes(_ c: Int) -> [UInt8] { (0..<c).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
    for _ in 0..<nb {
        switch dtype {
        case .q8_0: out += f16(0.002 + 0.01 * abs(rng.float())) + bytes(32)
        case .q4_0: out += f16(0.02 + 0.1 * abs(rng.float())) + bytes(16)
        case .q4_k: out += f16(0.001 + 0.004 * abs(rng.float())) + f16(0.001 + 0.004 * abs(rng.float())) + bytes(12) + bytes(128)
        case .q6_k: out += bytes(128) + bytes(64) + bytes(16) + f16(0.0005 + 0.002 * abs(rng.float()))
        case .q4_1: out += f16(0.02 + 0.1 * abs(rng.float())) + f16(rng.float() * 0.5) + bytes(16)
        case .q5_0: out += f16(0.01 + 0.05 * abs(rng.float())) + bytes(4) + bytes(16)
        case .q5_k: out += f16(0.001 + 0.004 * abs(rng.float())) + f16(0.001 + 0.004 * abs(rng.float())) + bytes(12) + bytes(32) + bytes(128)
        case .iq4_nl: out += f16(0.001 + 0.004 * abs(rng.float())) + bytes(16)
        case .iq4_xs: out += f16(0.0001 + 0.0004 * abs(rng.float())) + bytes(2) + bytes(4) + bytes(128)
        // exponents around 2^-8 (gpt-oss's weights), now and then subnormal scales or 2^22
        case .mxfp4:
            let extreme: [UInt8] = [0, 1, 150]
            let e: UInt8 = rng.next() % 16 == 0 ? extreme[Int(rng.next() % 3)] : UInt8(116 + rng.next() % 8)
            out += [e] + bytes(16)
        default: fatalError("not quantized")
        }
    }
    return out
}

/// ggml's dequantize_row_* for one block, written out element by element.
/// A weight matrix `[rows, k]` of `dtype` in memory of its own (64-byte aligned; the caller
/// deallocates): random blocks of a quantized type, else random floats stored in the type.
func randomWeights(_ d: DType, rows n: Int, k: Int, seed: UInt64, _ rng: inout TestRNG) -> UnsafeMutableRawPointer {
    var bytes: [UInt8]
    if d.isQuantized {
        bytes = randomBlocks(d, rows: n, k: k, seed: seed)
    } else {
        let f = rng.floats(n * k)
        switch d {
        case .f32: bytes = f.withUnsafeBytes { Array($0) }
        case .f16: bytes = f.map { HalfConversion.f32ToF16($0) }.withUnsafeBytes { Array($0) }
        default: bytes = f.map { HalfConversion.f32ToBF16($0) }.withUnsafeBytes { Array($0) }
        }
    }
    let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
    bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    return p
}

func naiveDequant(_ dtype: DType, _ b: ArraySlice<UInt8>) -> [Float] {
    let b = Array(b)
    func f16(_ i: Int) -> Float { HalfConversion.f16ToF32(UInt16(b[i]) | UInt16(b[i + 1]) << 8) }
    switch dtype {
    case .q8_0:
        return (0..<32).map { f16(0) * Float(Int8(bitPattern: b[2 + $0])) }
    case .q4_0:
        let d = f16(0)
        return (0..<32).map { (i: Int) -> Float in
            let code: Int = i < 16 ? Int(b[2 + i] & 15) : Int(b[2 + i - 16] >> 4)
            return d * Float(code - 8)
        }
    case .q4_k:
        let d = f16(0), dmin = f16(2)
        let s = Array(b[4..<16]), q = Array(b[16..<144])
        func scaleMin(_ j: Int) -> (Int, Int) {
            j < 4 ? (Int(s[j] & 63), Int(s[j + 4] & 63))
                  : (Int(s[j + 4] & 0xF) | Int(s[j - 4] >> 6) << 4, Int(s[j + 4] >> 4) | Int(s[j] >> 6) << 4)
        }
        return (0..<256).map { i in
            let sub = i / 32, chunk = i / 64, l = i % 32
            let (sc, m) = scaleMin(sub)
            let code = sub % 2 == 0 ? Int(q[32 * chunk + l] & 15) : Int(q[32 * chunk + l] >> 4)
            return d * Float(sc) * Float(code) - dmin * Float(m)
        }
    case .q6_k:
        let d = f16(208)
        return (0..<256).map { (i: Int) -> Float in
            let half = i / 128, j = i % 128, quarter = j / 32, l = j % 32
            let ql: UInt8 = b[64 * half + l + (quarter % 2 == 1 ? 32 : 0)]
            let low: Int = quarter < 2 ? Int(ql & 15) : Int(ql >> 4)
            let high: Int = Int(b[128 + 32 * half + l] >> UInt8(2 * quarter)) & 3
            let sc = Float(Int8(bitPattern: b[192 + 8 * half + l / 16 + 2 * quarter]))
            let code: Int = (low | (high << 4)) - 32
            return d * sc * Float(code)
        }
    case .q4_1:
        let d = f16(0), m = f16(2)
        return (0..<32).map { (i: Int) -> Float in
            let code: Int = i < 16 ? Int(b[4 + i] & 15) : Int(b[4 + i - 16] >> 4)
            return d * Float(code) + m
        }
    case .q5_0:
        let d = f16(0)
        let qh = UInt32(b[2]) | UInt32(b[3]) << 8 | UInt32(b[4]) << 16 | UInt32(b[5]) << 24
        return (0..<32).map { (i: Int) -> Float in
            let low = i < 16 ? Int(b[6 + i] & 15) : Int(b[6 + i - 16] >> 4)
            return d * Float((low | Int((qh >> UInt32(i)) & 1) << 4) - 16)
        }
    case .q5_k:
        let d = f16(0), dmin = f16(2)
        let s = Array(b[4..<16]), qh = Array(b[16..<48]), q = Array(b[48..<176])
        func scaleMin(_ j: Int) -> (Int, Int) {
            j < 4 ? (Int(s[j] & 63), Int(s[j + 4] & 63))
                  : (Int(s[j + 4] & 0xF) | Int(s[j - 4] >> 6) << 4, Int(s[j + 4] >> 4) | Int(s[j] >> 6) << 4)
        }
        return (0..<256).map { (i: Int) -> Float in
            let sub = i / 32, l = i % 32
            let (sc, m) = scaleMin(sub)
            let low: Int = sub % 2 == 0 ? Int(q[32 * (sub / 2) + l] & 15) : Int(q[32 * (sub / 2) + l] >> 4)
            let code: Int = low | (Int(qh[l] >> UInt8(sub)) & 1) << 4
            return d * Float(sc) * Float(code) - dmin * Float(m)
        }
    case .mxfp4:
        // the OCP spec's reading: E2M1 values times 2^(e - 127)
        let values: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]
        return (0..<32).map { (i: Int) -> Float in
            let code: Int = i < 16 ? Int(b[1 + i] & 15) : Int(b[1 + i - 16] >> 4)
            return Float(sign: .plus, exponent: Int(b[0]) - 127, significand: values[code])
        }
    case .iq4_nl, .iq4_xs:
        let values: [Float] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
        let d = f16(0)
        if dtype == .iq4_nl {
            return (0..<32).map { (i: Int) -> Float in
                let code: Int = i < 16 ? Int(b[2 + i] & 15) : Int(b[2 + i - 16] >> 4)
                return d * values[code]
            }
        }
        let sh = Int(b[2]) | Int(b[3]) << 8
        return (0..<256).map { (i: Int) -> Float in
            let sub = i / 32, l = i % 32
            let low: Int = (Int(b[4 + sub / 2]) >> (4 * (sub % 2))) & 15
            let high: Int = (sh >> (2 * sub)) & 3
            let q: UInt8 = b[8 + 16 * sub + l % 16]
            let code: Int = l < 16 ? Int(q & 15) : Int(q >> 4)
            return d * Float(low | high << 4 - 32) * values[code]
        }
    default: fatalError("not quantized")
    }
}

@Suite struct QuantKernelTests {
    @Test(arguments: DType.quantized)
    func dequantizeMatchesTheBlockDefinition(dtype: DType) {
        let n = 3, k = 512
        let raw = randomBlocks(dtype, rows: n, k: k, seed: 7)
        var ref: [Float] = []
        for blk in 0..<(n * k / dtype.blockElements) {
            ref += naiveDequant(dtype, raw[(blk * dtype.blockBytes)..<((blk + 1) * dtype.blockBytes)])
        }
        var out = [Float](repeating: .nan, count: n * k)
        raw.withUnsafeBytes { Kernels.dequantize($0.baseAddress!, dtype: dtype, &out, count: n * k) }
        let scale = ref.map(abs).max()!
        #expect(maxAbsDiff(out, ref) <= 1e-6 * scale, "\(dtype)")
        // a tensor over the same bytes reads the same values, row views included
        let t = Tensor(zeros: [n, k], dtype: dtype)
        raw.withUnsafeBytes { t.rawPointer.copyMemory(from: $0.baseAddress!, byteCount: raw.count) }
        #expect(t.byteCount == raw.count)
        #expect(maxAbsDiff(t.slice(1..<2).toArray(), Array(ref[k..<(2 * k)])) <= 1e-6 * scale)
        #expect(abs(t[2, 300] - ref[2 * k + 300]) <= 1e-6 * scale)
    }

    @Test(arguments: [1, 2, 3, 5, 8, 9, 17])
    func linearRowsMatchNaiveOnEveryPath(m: Int) {
        for dtype in DType.quantized {
            for (n, k) in [(1, 256), (7, 512), (33, 768)] + (dtype.blockElements == 32 ? [(5, 96), (3, 288)] : []) {
                let raw = randomBlocks(dtype, rows: n, k: k, seed: UInt64(n * 31 + k + m))
                var wf: [Float] = []
                for blk in 0..<(n * k / dtype.blockElements) {
                    wf += naiveDequant(dtype, raw[(blk * dtype.blockBytes)..<((blk + 1) * dtype.blockBytes)])
                }
                var rng = TestRNG(UInt64(m * 7 + n))
                let ldx = k + 5, ldy = n + 1
                let x = rng.floats(m * ldx)
                var ref = [Double](repeating: 0, count: m * n)
                var mag = [Double](repeating: 0, count: m * n)
                for r in 0..<m { for j in 0..<n { for i in 0..<k {
                    ref[r * n + j] += Double(wf[j * k + i]) * Double(x[r * ldx + i])
                    mag[r * n + j] += abs(Double(wf[j * k + i]) * Double(x[r * ldx + i]))
                } } }
                for path in Kernels.supportedPaths {
                    for acc in [false, true] {
                        var y = [Float](repeating: 0.5, count: m * ldy)
                        raw.withUnsafeBytes { wp in
                            Kernels.linearRows(path: path, weight: wp.baseAddress!, dtype: dtype, outFeatures: n, inFeatures: k,
                                               x: x, rows: m, ldx: ldx, y: &y, ldy: ldy, accumulate: acc)
                        }
                        var worst = 0.0
                        for r in 0..<m { for j in 0..<n {
                            // f32 accumulation: error relative to the sum of |products|
                            let e = abs(Double(y[r * ldy + j]) - ref[r * n + j] - (acc ? 0.5 : 0)) / max(1e-3, mag[r * n + j])
                            worst = max(worst, e)
                        } }
                        #expect(worst < 2e-6, "\(path) \(dtype) m=\(m) n=\(n) k=\(k) acc=\(acc): \(worst)")
                        for r in 0..<m { #expect(y[r * ldy + n] == 0.5, "row padding written") }
                    }
                }
                // the pool-split linear gives the same as the one-thread rows
                var y1 = [Float](repeating: 0, count: m * n), y2 = y1
                raw.withUnsafeBytes { wp in
                    Kernels.linear(weight: wp.baseAddress!, dtype: dtype, outFeatures: n, inFeatures: k, x: x, rows: m, ldx: ldx, y: &y1)
                    Kernels.linearRows(path: Kernels.path, weight: wp.baseAddress!, dtype: dtype, outFeatures: n, inFeatures: k,
                                       x: x, rows: m, ldx: ldx, y: &y2)
                }
                #expect(y1 == y2)
            }
        }
    }

    /// The 8-bit products' peak (bench-model's compute bound) is measured where the AVX2 8-bit
    /// kernel runs and is 0 on the portable path (no SIMD kernel to bound). Its size is a
    /// benchmark's business (a sanitizer build sharing the cores with other tests ran it at
    /// 0.27 G/s), so only that it is a measurement is asserted.
    @Test func q8PeakFollowsThePath() {
        #expect(Kernels.q8Peak(path: .portable, seconds: 0.01) == 0)
        if Kernels.supportedPaths.contains(.avx2) {
            let peak = Kernels.q8Peak(path: .avx2, seconds: 0.01)
            #expect(peak > 0 && peak.isFinite, "\(peak)")
        }
    }

    /// The 8-bit-activation path: x quantized per weight block (dx = max|x| / 127, q = round(x / dx)),
    /// then the dequantized weights times the dequantized x. The portable definition and the VNNI
    /// kernel both match that naive product, and stay near the exact (f32) product.
    // past 4 rows the VNNI kernel walks groups of 4 x rows over 64 weight rows at a time
    // (tails of 1-3 rows; 70 weight rows cross a 64-row band)
    // 17 and 37 rows: slices of 16 (the last of 1 and 5 rows)
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 16, 17, 37])
    func q8ActivationsMatchTheirDefinitionOnEveryPath(m: Int) {
        for dtype in DType.quantized {
            // 32-weight types: rows of an odd number of runs of 32, and fewer than eight runs
            let odd = dtype.blockElements == 32 ? [(5, 96), (4, 288)] : []
            for (n, k) in [(3, 256), (9, 512), (20, 1024), (70, 256)] + odd {
                let raw = randomBlocks(dtype, rows: n, k: k, seed: UInt64(n * 17 + k + m))
                var wf: [Float] = []
                for blk in 0..<(n * k / dtype.blockElements) {
                    wf += naiveDequant(dtype, raw[(blk * dtype.blockBytes)..<((blk + 1) * dtype.blockBytes)])
                }
                var rng = TestRNG(UInt64(m * 5 + n))
                let ldx = k + 3
                let x = rng.floats(m * ldx)
                // x as the path sees it: per block of the type's activations, rounded to 8 bits
                var xq = x
                let be = Kernels.q8XBlock(dtype)
                for r in 0..<m { for b in 0..<(k / be) {
                    let o = r * ldx + b * be
                    let amax = (0..<be).map { abs(x[o + $0]) }.max()!
                    let d = amax / 127, id = d > 0 ? 1 / d : 0
                    for i in 0..<be { xq[o + i] = Float((x[o + i] * id).rounded(.toNearestOrEven)) * d }
                } }
                var ref = [Double](repeating: 0, count: m * n), exact = ref, mag = ref
                for r in 0..<m { for j in 0..<n { for i in 0..<k {
                    ref[r * n + j] += Double(wf[j * k + i]) * Double(xq[r * ldx + i])
                    exact[r * n + j] += Double(wf[j * k + i]) * Double(x[r * ldx + i])
                    mag[r * n + j] += abs(Double(wf[j * k + i]) * Double(x[r * ldx + i]))
                } } }
                var byPath: [Kernels.Path: [Float]] = [:]
                for path in Kernels.supportedPaths {
                    var y = [Float](repeating: 0, count: m * n)
                    raw.withUnsafeBytes { wp in
                        Kernels.linearRowsQ8(path: path, weight: wp.baseAddress!, dtype: dtype, outFeatures: n, inFeatures: k,
                                             x: x, rows: m, ldx: ldx, y: &y)
                    }
                    byPath[path] = y
                    var worst = 0.0, drift = 0.0
                    for i in 0..<(m * n) {
                        worst = max(worst, abs(Double(y[i]) - ref[i]) / max(1e-3, mag[i]))
                        drift = max(drift, abs(Double(y[i]) - exact[i]) / max(1e-3, mag[i]))
                    }
                    #expect(worst < 1e-5, "\(path) \(dtype) m=\(m) n=\(n) k=\(k): \(worst)")
                    #expect(drift < 2e-2, "\(path) \(dtype) m=\(m) n=\(n) k=\(k): \(drift) from exact")
                }
                // the codebook types' VNNI walk (two blocks per 512-bit step) sums as the AVX2 one does
                if [.mxfp4, .iq4_nl].contains(dtype), let v = byPath[.avx512], let w = byPath[.avx2] {
                    #expect(v == w, "\(dtype) m=\(m) n=\(n) k=\(k): AVX-512 and AVX2 differ")
                }
                // the pool-split linear in q8 mode gives the one-thread kernel's result
                var y1 = [Float](repeating: 0, count: m * n), y2 = y1
                raw.withUnsafeBytes { wp in
                    Kernels.linear(weight: wp.baseAddress!, dtype: dtype, outFeatures: n, inFeatures: k, x: x, rows: m, ldx: ldx, y: &y1,
                                   activations: .q8)
                    Kernels.linearRowsQ8(path: Kernels.path, weight: wp.baseAddress!, dtype: dtype, outFeatures: n, inFeatures: k,
                                         x: x, rows: m, ldx: ldx, y: &y2)
                }
                for i in 0..<(m * n) { #expect(abs(Double(y1[i] - y2[i])) / max(1e-3, mag[i]) < 1e-5, "\(dtype) m=\(m)") }
            }
        }
    }

    /// Matrices that share an input run as one job (`Kernels.linearGroup`): each member's output
    /// equals its own `Kernels.linear`, bit for bit (the same chunks, the same x quantization), in
    /// both activation modes, for float members, quantized members of one type and of two (one
    /// job per type), and a float member among quantized ones (one job each).
    /// Q4_0 on AVX2 takes weight rows eight at a time and the rest one at a time with the same
    /// arithmetic to the bit: outputs do not depend on how the pool's chunks split the rows (so not
    /// on the thread count). Rows 0..<21 whole against 0..<5 and 5..<21 (weights offset), and each
    /// row alone, on every path.
    @Test(arguments: [1, 3, 6])
    func q4_0OutputsDoNotDependOnHowRowsAreSplit(m: Int) {
        let n = 21, k = 256, rowBytes = k / 32 * 18
        let raw = randomBlocks(.q4_0, rows: n, k: k, seed: UInt64(31 + m))
        var rng = TestRNG(UInt64(m))
        let x = rng.floats(m * k)
        for path in Kernels.supportedPaths {
            var whole = [Float](repeating: 0, count: m * n), split = whole, single = whole
            raw.withUnsafeBytes { wp in
                let w = wp.baseAddress!
                Kernels.linearRowsQ8(path: path, weight: w, dtype: .q4_0, outFeatures: n, inFeatures: k, x: x, rows: m, y: &whole)
                split.withUnsafeMutableBufferPointer { y in
                    Kernels.linearRowsQ8(path: path, weight: w, dtype: .q4_0, outFeatures: 5, inFeatures: k, x: x, rows: m, y: y.baseAddress!, ldy: n)
                    Kernels.linearRowsQ8(path: path, weight: w + 5 * rowBytes, dtype: .q4_0, outFeatures: n - 5, inFeatures: k, x: x, rows: m,
                                         y: y.baseAddress! + 5, ldy: n)
                }
                single.withUnsafeMutableBufferPointer { y in
                    for j in 0..<n {
                        Kernels.linearRowsQ8(path: path, weight: w + j * rowBytes, dtype: .q4_0, outFeatures: 1, inFeatures: k, x: x, rows: m,
                                             y: y.baseAddress! + j, ldy: n)
                    }
                }
            }
            #expect(whole == split && whole == single, "\(path) m=\(m)")
            #expect(whole.allSatisfy { $0.isFinite } && whole.contains { $0 != 0 })
        }
    }

    @Test func linearGroupGivesEachMembersOwnLinear() {
        let k = 512
        let combos: [[DType]] = [[.f32, .f32, .f32], [.bf16, .f16], [.q4_k, .q4_k, .q6_k], [.q8_0, .q8_0], [.q4_k, .f32, .q4_0]]
        let widths = [300, 20, 76]
        for (ci, dts) in combos.enumerated() {
            var rng = TestRNG(UInt64(900 + ci))
            let weights: [UnsafeMutableRawPointer] = dts.enumerated().map { i, d in
                randomWeights(d, rows: widths[i], k: k, seed: UInt64(ci * 10 + i), &rng)
            }
            defer { for p in weights { p.deallocate() } }
            for act in [Kernels.Activations.q8, .f32] {
                for m in [1, 3, 16] {
                    let x = rng.floats(m * k)
                    var own = dts.indices.map { [Float](repeating: 0, count: m * widths[$0]) }
                    var g0 = [Float](repeating: .nan, count: m * widths[0]), g1 = [Float](repeating: .nan, count: m * widths[1])
                    var g2 = [Float](repeating: .nan, count: m * widths[2])
                    for i in dts.indices {
                        Kernels.linear(weight: weights[i], dtype: dts[i], outFeatures: widths[i], inFeatures: k, x: x, rows: m, y: &own[i],
                                       activations: act)
                    }
                    g0.withUnsafeMutableBufferPointer { y0 in
                        g1.withUnsafeMutableBufferPointer { y1 in
                            g2.withUnsafeMutableBufferPointer { y2 in
                                let a = Kernels.GroupMember(weight: weights[0], dtype: dts[0], outFeatures: widths[0], y: y0.baseAddress!)
                                let b = Kernels.GroupMember(weight: weights[1], dtype: dts[1], outFeatures: widths[1], y: y1.baseAddress!)
                                if dts.count == 3 {
                                    let c = Kernels.GroupMember(weight: weights[2], dtype: dts[2], outFeatures: widths[2], y: y2.baseAddress!)
                                    Kernels.linearGroup(x: x, rows: m, inFeatures: k, a, b, c, activations: act)
                                } else {
                                    Kernels.linearGroup(x: x, rows: m, inFeatures: k, a, b, activations: act)
                                }
                            }
                        }
                    }
                    let grouped = [g0, g1, g2]
                    for i in dts.indices {
                        #expect(grouped[i] == own[i], "\(dts) \(act) m=\(m): member \(i) (\(dts[i]))")
                    }
                }
            }
        }
    }

    /// Linears each with its own x, shape and type as one job (`Kernels.LinearBatch`, a mixture's
    /// experts): each member's output equals its own `Kernels.linear`, bit for bit, in both
    /// activation modes; 70 members (past the 64 of one job), 1 to 16 rows, each type.
    @Test func linearBatchGivesEachMembersOwnLinear() {
        let types: [DType] = [.f32, .f16, .bf16] + DType.quantized
        for act in [Kernels.Activations.q8, .f32] {
            var rng = TestRNG(act == .q8 ? 77 : 78)
            let batch = Kernels.LinearBatch(capacity: 70, activations: act)
            var weights: [UnsafeMutableRawPointer] = [], xs: [UnsafeMutablePointer<Float>] = [], ys: [UnsafeMutablePointer<Float>] = []
            var shapes: [(DType, Int, Int, Int)] = []
            defer { for p in weights { p.deallocate() }; for y in ys + xs { y.deallocate() } }
            for i in 0..<70 {
                let d = types[i % types.count], n = [4, 20, 76, 130][i % 4], k = d.isQuantized ? 256 * (1 + i % 3) : 64 * (1 + i % 5)
                let m = min([1, 1, 3, 8, 16][i % 5], Kernels.maxRows(dtype: d))
                weights.append(randomWeights(d, rows: n, k: k, seed: UInt64(1000 + i), &rng))
                let x = UnsafeMutablePointer<Float>.allocate(capacity: m * k)
                x.initialize(from: rng.floats(m * k), count: m * k)
                xs.append(x)
                let y = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
                y.initialize(repeating: .nan, count: m * n)
                ys.append(y)
                shapes.append((d, n, k, m))
            }
            for i in 0..<70 {
                let (d, n, k, m) = shapes[i]
                batch.append(weight: weights[i], dtype: d, outFeatures: n, inFeatures: k, x: xs[i], rows: m, y: ys[i])
            }
            batch.run()
            for i in 0..<70 {
                let (d, n, k, m) = shapes[i]
                var own = [Float](repeating: 0, count: m * n)
                Kernels.linear(weight: weights[i], dtype: d, outFeatures: n, inFeatures: k, x: xs[i], rows: m, y: &own, activations: act)
                let got = Array(UnsafeBufferPointer(start: ys[i], count: m * n))
                #expect(got == own, "\(act) member \(i): \(d) n=\(n) k=\(k) m=\(m)")
                #expect(own.allSatisfy { $0.isFinite })
            }
        }
    }

    /// Prompt processing in the fast mode: x and the dequantized weights rounded to bf16, their
    /// products summed in f32 (AVX-512 BF16), against the naive product of the rounded values.
    @Test func bf16GEMMMatchesTheRoundedProduct() {
        guard Kernels.bf16GEMMSupported else { return }
        for dtype in DType.quantized + [.f16, .bf16] {
            for (n, k, m) in [(13, 512, 9), (37, 512, 17), (8, 256, 64), (5, 768, 130), (100, 256, 16)] {
                let raw: [UInt8]
                var wf: [Float] = []
                if dtype.isQuantized {
                    raw = randomBlocks(dtype, rows: n, k: k, seed: UInt64(n + k + m))
                    for blk in 0..<(n * k / dtype.blockElements) {
                        wf += naiveDequant(dtype, raw[(blk * dtype.blockBytes)..<((blk + 1) * dtype.blockBytes)])
                    }
                } else {
                    // 16-bit weights: random values, f16 subnormals among them
                    var rng = TestRNG(UInt64(n * k))
                    let bits: [UInt16] = rng.floats(n * k).enumerated().map { i, v in
                        let f = i % 97 == 0 ? v * 1e-6 : v
                        return dtype == .f16 ? HalfConversion.f32ToF16(f) : HalfConversion.f32ToBF16(f)
                    }
                    wf = bits.map { dtype == .f16 ? HalfConversion.f16ToF32($0) : HalfConversion.bf16ToF32($0) }
                    raw = bits.withUnsafeBytes { Array($0) }
                }
                func bf(_ v: Float) -> Float { HalfConversion.bf16ToF32(HalfConversion.f32ToBF16(v)) }
                var rng = TestRNG(UInt64(m))
                let ldx = k + 32, ldy = n + 3
                let x = rng.floats(m * ldx)
                var y = [Float](repeating: 0.25, count: m * ldy)
                var scratch = [Float](repeating: 0, count: 3 * k)  // three weight rows per band: several bands
                let ok = raw.withUnsafeBytes { wp in
                    Kernels.gemmBF16(weight: wp.baseAddress!, dtype: dtype, outFeatures: n, inFeatures: k, x: x, rows: m, ldx: ldx,
                                              y: &y, ldy: ldy, accumulate: true, scratch: &scratch, scratchElements: scratch.count)
                }
                #expect(ok)
                var worst = 0.0
                for r in 0..<m { for j in 0..<n {
                    var ref = 0.0, mag = 0.0
                    for i in 0..<k {
                        let p = Double(bf(wf[j * k + i])) * Double(bf(x[r * ldx + i]))
                        ref += p; mag += abs(p)
                    }
                    worst = max(worst, abs(Double(y[r * ldy + j]) - 0.25 - ref) / max(1e-3, mag))
                } }
                #expect(worst < 1e-5, "\(dtype) n=\(n) k=\(k) m=\(m): \(worst)")
                for r in 0..<m { for j in n..<ldy { #expect(y[r * ldy + j] == 0.25) } }
            }
        }
    }
}
