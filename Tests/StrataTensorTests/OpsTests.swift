import StrataTestSupport
import Testing
import Foundation
@testable import StrataTensor

// Each op against a naive Double-precision loop. Tolerance 1e-5 absolute
// (f32 arithmetic vs Double on values of magnitude <= ~10) unless stated.

@Suite struct OpsTests {
    @Test func elementwise() {
        var rng = TestRNG(5)
        let a = rng.floats(37), b = rng.floats(37)
        var out = [Float](repeating: 0, count: 37)
        Ops.add(a, b, &out, count: 37)
        #expect(out == zip(a, b).map { $0 + $1 })
        Ops.mul(a, b, &out, count: 37)
        #expect(out == zip(a, b).map { $0 * $1 })
        Ops.scale(a, 0.5, &out, count: 37)
        #expect(out == a.map { $0 * 0.5 })
    }

    @Test func activations() {
        var rng = TestRNG(6)
        let x = rng.floats(101).map { $0 * 6 }
        var s = x; Ops.silu(&s, count: s.count)
        #expect(maxAbsDiff(s, x.map { Float(Double($0) / (1 + exp(-Double($0)))) }) < 1e-5)
        var ge = x; Ops.geluErf(&ge, count: ge.count)
        #expect(maxAbsDiff(ge, x.map { Float(0.5 * Double($0) * (1 + erf(Double($0) / sqrt(2)))) }) < 1e-5)
        var gt = x; Ops.geluTanh(&gt, count: gt.count)
        #expect(maxAbsDiff(gt, x.map { v -> Float in
            let d = Double(v)
            return Float(0.5 * d * (1 + tanh(sqrt(2 / Double.pi) * (d + 0.044715 * d * d * d))))
        }) < 1e-5)
        // the two GELU forms differ by < 1e-3 on this range but are not equal
        #expect(maxAbsDiff(ge, gt) < 1e-2 && maxAbsDiff(ge, gt) > 0)
        var g = x; let up = rng.floats(101)
        Ops.swiglu(&g, up, count: 101)
        #expect(maxAbsDiff(g, zip(s, up).map { $0 * $1 }) < 1e-5)
        // large enough to run in parallel chunks (2 threads): every element once, against a naive loop
        let threads = Threads.count
        Threads.set(2)
        defer { Threads.set(threads) }
        let n = 3 * (1 << 15) + 7
        let bigG = rng.floats(n), bigU = rng.floats(n)
        var out = bigG
        Ops.swiglu(&out, bigU, count: n)
        let ref = zip(bigG, bigU).map { (x, u) in Float(Double(x) / (1 + exp(-Double(x))) * Double(u)) }
        #expect(maxAbsDiff(out, ref) < 1e-5)
    }

    @Test func rmsNormAndLayerNorm() {
        var rng = TestRNG(8)
        let rows = 7, n = 13
        let x = rng.floats(rows * n), w = rng.floats(n), b = rng.floats(n)
        var out = [Float](repeating: 0, count: rows * n)
        Ops.rmsNorm(x, weight: w, eps: 1e-6, &out, rows: rows, n: n)
        var ref = [Float]()
        for r in 0..<rows {
            let row = x[(r * n)..<(r * n + n)].map(Double.init)
            let rms = sqrt(row.map { $0 * $0 }.reduce(0, +) / Double(n) + 1e-6)
            ref += (0..<n).map { Float(row[$0] / rms * Double(w[$0])) }
        }
        #expect(maxAbsDiff(out, ref) < 1e-5)
        Ops.layerNorm(x, weight: w, bias: b, eps: 1e-5, &out, rows: rows, n: n)
        ref = []
        for r in 0..<rows {
            let row = x[(r * n)..<(r * n + n)].map(Double.init)
            let mean = row.reduce(0, +) / Double(n)
            let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
            ref += (0..<n).map { Float((row[$0] - mean) / sqrt(v + 1e-5) * Double(w[$0]) + Double(b[$0])) }
        }
        #expect(maxAbsDiff(out, ref) < 1e-5)
        // in place (aliasing) gives the same result
        var inplace = x
        inplace.withUnsafeMutableBufferPointer { p in
            Ops.layerNorm(p.baseAddress!, weight: w, bias: b, eps: 1e-5, p.baseAddress!, rows: rows, n: n)
        }
        #expect(inplace == out)
    }

    /// The softmax kernel on every path against a double-precision reference: lengths around
    /// the 16-lane width, large and negative scores, -inf entries (masked keys), NaN propagating.
    @Test func softmaxRowMatchesTheReferenceOnEveryPath() {
        var rng = TestRNG(11)
        for path in Kernels.supportedPaths {
            for n in [1, 2, 15, 16, 17, 31, 33, 100, 513] {
                var x = rng.floats(n).map { $0 * 30 - 10 }
                if n > 3 { x[2] = -.infinity }
                let ref: [Double] = {
                    let m = x.map(Double.init).max()!
                    let e = x.map { exp(Double($0) - m) }
                    let s = e.reduce(0, +)
                    return e.map { $0 / s }
                }()
                x.withUnsafeMutableBufferPointer { Kernels.softmaxRow(path: path, $0.baseAddress!, count: n) }
                let worst = zip(x, ref).map { abs(Double($0) - $1) / max($1, 1e-30) }.max()!
                #expect(worst < 5e-6, "\(path) n=\(n): relative error \(worst)")
                #expect(abs(x.map(Double.init).reduce(0, +) - 1) < 1e-5, "\(path) n=\(n)")
                if n > 3 { #expect(x[2] >= 0 && x[2] < 1e-37) }   // e^-inf: clamped to e^-87 scaled, as Ops.fastExp
            }
            var bad: [Float] = [1, .nan, 2, 3]
            bad.withUnsafeMutableBufferPointer { Kernels.softmaxRow(path: path, $0.baseAddress!, count: 4) }
            #expect(bad.allSatisfy { $0.isNaN }, "\(path): a NaN score must make the row NaN")
        }
    }

    @Test func softmaxStableAndCausal() {
        // large values would overflow a naive exp
        var x: [Float] = [1000, 1001, 1002, -5, 3, 2, 2, 2]
        Ops.softmax(&x, rows: 2, n: 4)
        let e = [exp(-2.0), exp(-1.0), 1.0]
        let s = e.reduce(0, +) + exp(-1005.0)
        #expect(maxAbsDiff(Array(x[0..<3]), e.map { Float($0 / s) }) < 1e-6)
        #expect(maxAbsDiff(Array(x[4..<8]), [0.25, 0.25, 0.25, 0.25].map { Float($0) }) > 0.1)  // row 2 = [3,2,2,2]
        // causal: row r sees columns 0...r+offset
        var rng = TestRNG(12)
        let rows = 5, n = 9, off = 3
        let v = rng.floats(rows * n)
        var c = v
        Ops.softmax(&c, rows: rows, n: n, causalOffset: off)
        for r in 0..<rows {
            let valid = r + off + 1
            let row = v[(r * n)..<(r * n + valid)].map(Double.init)
            let m = row.max()!
            let ex = row.map { exp($0 - m) }
            let sum = ex.reduce(0, +)
            #expect(maxAbsDiff(Array(c[(r * n)..<(r * n + valid)]), ex.map { Float($0 / sum) }) < 1e-6)
            #expect(c[(r * n + valid)..<(r * n + n)].allSatisfy { $0 == 0 })
        }
    }

    @Test(arguments: [RoPE.Layout.halfSplit, .interleaved])
    func ropeMatchesNaive(layout: RoPE.Layout) {
        var rng = TestRNG(13)
        let tokens = 3, heads = 2, d = 8
        let rope = RoPE(headDim: d, theta: 10000, layout: layout)
        let x = rng.floats(tokens * heads * d)
        var y = x
        let pos: [Int32] = [0, 5, 17]
        pos.withUnsafeBufferPointer { p in y.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, tokens: tokens, heads: heads, positions: p) } }
        for t in 0..<tokens { for h in 0..<heads { for i in 0..<(d / 2) {
            let inv = 1 / pow(10000.0, Double(2 * i) / Double(d))
            let ang = Double(pos[t]) * inv
            let (a, b) = layout == .halfSplit ? (i, i + d / 2) : (2 * i, 2 * i + 1)
            let base = t * heads * d + h * d
            let x0 = Double(x[base + a]), x1 = Double(x[base + b])
            #expect(abs(Double(y[base + a]) - (x0 * cos(ang) - x1 * sin(ang))) < 1e-5)
            #expect(abs(Double(y[base + b]) - (x1 * cos(ang) + x0 * sin(ang))) < 1e-5)
        } } }
        // position 0 is the identity
        #expect(Array(y[0..<(heads * d)]) == Array(x[0..<(heads * d)]))
    }

    @Test func ropeScaling() {
        let plain = RoPE(headDim: 64, theta: 500000)
        let lin = RoPE(headDim: 64, theta: 500000, scaling: .linear(factor: 4))
        #expect(maxAbsDiff(lin.invFreq, plain.invFreq.map { $0 / 4 }) == 0)
        let l3 = RoPE(headDim: 64, theta: 500000, scaling: .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
        // high frequencies (short wavelengths) unchanged, lowest divided by 8
        #expect(l3.invFreq[0] == plain.invFreq[0])
        #expect(abs(l3.invFreq[31] - plain.invFreq[31] / 8) < 1e-12)
        // the band in between is monotone and in [inv/8, inv]
        for i in 0..<32 { #expect(l3.invFreq[i] <= plain.invFreq[i] && l3.invFreq[i] >= plain.invFreq[i] / 8 * 0.999999) }
    }

    @Test func embeddingArgmaxTopK() {
        var rng = TestRNG(14)
        let table = rng.floats(10 * 4)
        let ids: [Int32] = [3, 0, 9, 3]
        var out = [Float](repeating: 0, count: 16)
        table.withUnsafeBytes { t in ids.withUnsafeBufferPointer { Ops.embedding(table: t.baseAddress!, dtype: .f32, vocab: 10, dim: 4, ids: $0, &out) } }
        for (r, id) in ids.enumerated() { #expect(Array(out[(r * 4)..<(r * 4 + 4)]) == Array(table[(Int(id) * 4)..<(Int(id) * 4 + 4)])) }
        // bf16 table
        let bf = table.map { HalfConversion.f32ToBF16($0) }
        bf.withUnsafeBytes { t in ids.withUnsafeBufferPointer { Ops.embedding(table: t.baseAddress!, dtype: .bf16, vocab: 10, dim: 4, ids: $0, &out) } }
        #expect(out[4] == HalfConversion.bf16ToF32(bf[0]))

        let v: [Float] = [0.5, 2, -1, 2, .nan, 7, 0]
        #expect(Ops.argmax(v, count: v.count) == 5)
        #expect(Ops.argmax([1, 3, 3], count: 3) == 1)
        #expect(Ops.topK(v, count: v.count, k: 3) == [5, 1, 3])
        let big = rng.floats(1000)
        let top = Ops.topK(big, count: 1000, k: 17)
        let ref = big.enumerated().sorted { $0.element > $1.element }.prefix(17).map { $0.offset }
        #expect(top == ref)
        // the buffer variant, one buffer reused across calls of different k (ties: lower index first)
        var heap: [(Float, Int)] = []
        for k in [17, 1, 40, 3, 0, 1000] {
            Ops.topK(big, count: 1000, k: k, into: &heap)
            #expect(heap.map { $0.1 } == Array(big.enumerated().sorted { $0.element > $1.element }.prefix(k).map { $0.offset }))
        }
        let ties: [Float] = [1, 3, 3, .nan, 1, 3]
        Ops.topK(ties, count: ties.count, k: 4, into: &heap)
        #expect(heap.map { $0.1 } == [1, 2, 5, 0])
    }

    /// The decode attention kernels (scores of one head against key rows, the weighted sum of
    /// value rows) on every path against double-precision loops: head dims around the 8- and
    /// 16-lane widths and the 64-float output tile, key counts around the 8- and 16-key blocks
    /// (0 included), rows wider than the head (a kv head inside a wider row), accumulate on and off.
    @Test func attentionKernelsMatchNaiveOnEveryPath() {
        var rng = TestRNG(77)
        for path in Kernels.supportedPaths {
            for d in [1, 5, 8, 12, 16, 17, 64, 80, 96, 130] {
                for n in [0, 1, 7, 8, 9, 15, 16, 17, 33, 100] {
                    let ld = d + 3
                    let q = rng.floats(d), k = rng.floats(max(1, n) * ld), v = rng.floats(max(1, n) * ld)
                    var s = [Float](repeating: .nan, count: n + 1)
                    Kernels.attentionScores(path: path, q: q, k: k, ldk: ld, keys: n, headDim: d, scale: 0.37, scores: &s)
                    for j in 0..<n {
                        let ref = (0..<d).reduce(0.0) { $0 + Double(q[$1]) * Double(k[j * ld + $1]) } * 0.37
                        #expect(abs(Double(s[j]) - ref) < 1e-5 * (1 + abs(ref)), "\(path) d=\(d) n=\(n) score \(j)")
                    }
                    #expect(s[n].isNaN, "\(path) d=\(d) n=\(n): wrote past the scores")
                    let p = rng.floats(max(1, n))
                    for accumulate in [false, true] {
                        let start = rng.floats(d + 1)
                        var out = start
                        Kernels.attentionValues(path: path, weights: p, v: v, ldv: ld, keys: n, headDim: d, out: &out, accumulate: accumulate)
                        for i in 0..<d {
                            let ref = (accumulate ? Double(start[i]) : 0) + (0..<n).reduce(0.0) { $0 + Double(p[$1]) * Double(v[$1 * ld + i]) }
                            #expect(abs(Double(out[i]) - ref) < 1e-5 * (1 + abs(ref)), "\(path) d=\(d) n=\(n) acc=\(accumulate) out \(i)")
                        }
                        #expect(out[d] == start[d], "\(path) d=\(d) n=\(n): wrote past the output row")
                    }
                }
            }
        }
    }

    /// (tokens, start, head dim, kv heads): one-row cases run the grouped decode kernel (kv heads
    /// split over the pool; one kv head: MQA, all four query heads in one call); head dims 5 and
    /// 12 take the kernels' tails, 64 their full tiles; 150 keys cross tiles of 64.
    @Test(arguments: [(1, 5, 5, 2), (1, 40, 12, 2), (1, 40, 12, 1), (1, 70, 64, 2), (1, 149, 64, 4), (4, 4, 5, 2), (3, 7, 5, 2)])
    func attentionMatchesNaive(t: Int, start: Int, d: Int, kvh: Int) {
        // GQA: 4 query heads over kvh kv heads, queries at positions start..<start+t
        var rng = TestRNG(UInt64(t * 31 + start + d + kvh))
        let heads = 4, s = start + t, group = heads / kvh
        let q = rng.floats(t * heads * d), k = rng.floats(s * kvh * d), v = rng.floats(s * kvh * d)
        var out = [Float](repeating: 0, count: t * heads * d)
        var scores = [Float](repeating: 0, count: t * s)
        let scale = 1 / Float(d).squareRoot()
        Attention.causal(q: q, ldq: heads * d, k: k, ldk: kvh * d, v: v, ldv: kvh * d, out: &out, ldo: heads * d,
                         tokens: t, start: start, keys: s, heads: heads, kvHeads: kvh, headDim: d, scale: scale, scores: &scores)
        for i in 0..<t { for h in 0..<heads {
            let g = h / group
            let visible = start + i + 1
            var w = (0..<visible).map { j -> Double in
                (0..<d).reduce(0.0) { $0 + Double(q[i * heads * d + h * d + $1]) * Double(k[j * kvh * d + g * d + $1]) } * Double(scale)
            }
            let m = w.max()!
            w = w.map { exp($0 - m) }
            let sum = w.reduce(0, +)
            for c in 0..<d {
                let ref = (0..<visible).reduce(0.0) { $0 + w[$1] / sum * Double(v[$1 * kvh * d + g * d + c]) }
                #expect(abs(Double(out[i * heads * d + h * d + c]) - ref) < 1e-5)
            }
        } }
    }

    /// gpt-oss's attention sinks, against transformers' eager formula written naively in doubles
    /// (the sink a column of the softmax, dropped after it): the prompt's attention (one query
    /// row per position, a window too) and the decode kernel on every path, with sinks small,
    /// larger than every score (the max moves to the sink), and a query with no visible key.
    @Test(arguments: [(3, 4, 0), (5, 9, 0), (4, 6, 3)])
    func attentionSinksMatchTheirDefinition(t: Int, start: Int, window: Int) {
        var rng = TestRNG(UInt64(t * 7 + start + window))
        let heads = 4, kvh = 2, d = 8, s = start + t, group = heads / kvh
        let q = rng.floats(t * heads * d), k = rng.floats(s * kvh * d), v = rng.floats(s * kvh * d)
        let sinks: [Float] = [0.3, -1.5, 9, 2.5]
        let scale = 1 / Float(d).squareRoot()
        func naive(_ i: Int, _ h: Int) -> [Double] {
            let g = h / group, pos = start + i
            let keys = (window > 0 ? max(0, pos - window + 1) : 0)...pos
            let w = keys.map { j -> Double in
                (0..<d).reduce(0.0) { $0 + Double(q[i * heads * d + h * d + $1]) * Double(k[j * kvh * d + g * d + $1]) } * Double(scale)
            }
            let m = max(w.max()!, Double(sinks[h]))
            let e = w.map { exp($0 - m) }, sum = e.reduce(0, +) + exp(Double(sinks[h]) - m)
            return (0..<d).map { c in zip(keys, e).reduce(0.0) { $0 + $1.1 / sum * Double(v[$1.0 * kvh * d + g * d + c]) } }
        }
        var out = [Float](repeating: 0, count: t * heads * d)
        var scores = [Float](repeating: 0, count: t * s)
        sinks.withUnsafeBufferPointer { sp in
            Attention.causal(q: q, ldq: heads * d, k: k, ldk: kvh * d, v: v, ldv: kvh * d, out: &out, ldo: heads * d, tokens: t, start: start,
                             keys: s, heads: heads, kvHeads: kvh, headDim: d, scale: scale, scores: &scores, window: window, sinks: sp.baseAddress)
        }
        for i in 0..<t { for h in 0..<heads {
            let ref = naive(i, h)
            for c in 0..<d { #expect(abs(Double(out[i * heads * d + h * d + c]) - ref[c]) < 1e-5, "prefill row \(i) head \(h)") }
        } }
        // the last query row through the decode kernel, each kv head's group with its own sinks
        for path in Kernels.supportedPaths {
            var dec = [Float](repeating: .nan, count: heads * d)
            let i = t - 1, first = window > 0 ? max(0, s - window) : 0
            for g in 0..<kvh {
                sinks.withUnsafeBufferPointer { sp in
                    Kernels.attentionDecode(path: path, q: Array(q[(i * heads * d + g * group * d)...]), group: group, headDim: d,
                                            k: UnsafeRawPointer(k).advanced(by: g * d * 4), v: UnsafeRawPointer(v).advanced(by: g * d * 4),
                                            type: .f32, ld: kvh * d * 4, ldv: kvh * d * 4, table: nil, block: 1, blockStride: 0, first: first,
                                            keys: s, scale: scale, softcap: 0, sinks: sp.baseAddress! + g * group, out: &dec[g * group * d])
                }
            }
            for h in 0..<heads {
                let ref = naive(i, h)
                for c in 0..<d { #expect(abs(Double(dec[h * d + c]) - ref[c]) < 1e-5, "\(path) decode head \(h)") }
            }
            // no visible key: the sink takes all the weight, the output is zero
            var none = [Float](repeating: .nan, count: group * d)
            sinks.withUnsafeBufferPointer { sp in
                Kernels.attentionDecode(path: path, q: q, group: group, headDim: d, k: k, v: v, type: .f32, ld: kvh * d * 4, ldv: kvh * d * 4,
                                        table: nil, block: 1, blockStride: 0, first: s, keys: s, scale: scale, softcap: 0, sinks: sp.baseAddress, out: &none)
            }
            #expect(none.allSatisfy { $0 == 0 }, "\(path): \(none)")
        }
    }

    /// The grouped decode kernel on every path against a naive softmax attention in doubles: keys
    /// through a reversed block table (blocks of 16; tiles of 64 cross blocks) or contiguous, a
    /// window (first > 0), Gemma-2's soft-capping, groups of 1, 3, 4 and 20 query heads (past the
    /// kernel's 16 per pass), head dims 5, 12, 64, 80 and 640, K and V rows of different strides (contiguous); no
    /// keys gives zeros; a NaN key makes every head NaN; nothing written past the output.
    @Test func groupedDecodeAttentionMatchesNaiveOnEveryPath() {
        let bs = 16
        let cases: [(group: Int, d: Int, n: Int, first: Int, softcap: Float, paged: Bool)] = [
            (1, 5, 3, 0, 0, true), (3, 64, 150, 0, 0, true), (20, 80, 77, 10, 0, true), (3, 64, 200, 137, 0, true),
            (4, 12, 90, 0, 5, true), (2, 64, 130, 0, 0, false), (2, 5, 40, 40, 0, true),
            (3, 640, 21, 0, 0, true)]  // a head too wide for the transposed tile: the pairs' kernel
        for c in cases {
            var rng = TestRNG(UInt64(c.group * 1000 + c.d * 10 + c.n + c.first))
            let blocks = (c.n + bs - 1) / bs
            let table = Array((0..<blocks).reversed())
            // a kv head's column inside wider rows; V's rows of another width where no table shares one block stride
            let ld = 2 * c.d + 3, ldv = c.paged ? ld : c.d + 1
            let k = rng.floats(blocks * bs * ld), v = rng.floats(blocks * bs * ldv), q = rng.floats(c.group * c.d)
            let scale = 1 / Float(c.d).squareRoot()
            let row = { (j: Int) in c.paged ? table[j / bs] * bs + j % bs : j }
            var ref = [Double](repeating: 0, count: c.group * c.d)
            for h in 0..<c.group where c.first < c.n {
                var w = (c.first..<c.n).map { j -> Double in
                    var x = (0..<c.d).reduce(0.0) { $0 + Double(q[h * c.d + $1]) * Double(k[row(j) * ld + $1]) } * Double(scale)
                    if c.softcap > 0 { x = tanh(x / Double(c.softcap)) * Double(c.softcap) }
                    return x
                }
                let m = w.max()!
                w = w.map { exp($0 - m) }
                let sum = w.reduce(0, +)
                for i in 0..<c.d {
                    ref[h * c.d + i] = w.indices.reduce(0.0) { $0 + w[$1] / sum * Double(v[row(c.first + $1) * ldv + i]) }
                }
            }
            for path in Kernels.supportedPaths {
                var out = [Float](repeating: .nan, count: c.group * c.d + 1)
                table.withUnsafeBufferPointer { t in
                    Kernels.attentionDecode(path: path, q: q, group: c.group, headDim: c.d, k: k, v: v, type: .f32, ld: ld * 4, ldv: ldv * 4,
                                            table: c.paged ? t.baseAddress : nil, block: bs, blockStride: bs * ld * 4, first: c.first, keys: c.n, scale: scale,
                                            softcap: c.softcap, out: &out)
                }
                for i in 0..<(c.group * c.d) {
                    #expect(abs(Double(out[i]) - ref[i]) < 1e-5 * (1 + abs(ref[i])), "\(path) \(c) out \(i): \(out[i]) vs \(ref[i])")
                }
                #expect(out[c.group * c.d].isNaN, "\(path) \(c): wrote past the output")
            }
        }
        // a NaN in one key reaches every head of the group (a non-finite pass is reported, not hidden)
        var rng = TestRNG(7)
        var k = rng.floats(20 * 8)
        let v = rng.floats(20 * 8), q = rng.floats(2 * 8)
        k[5 * 8 + 3] = .nan
        for path in Kernels.supportedPaths {
            var out = [Float](repeating: 0, count: 16)
            Kernels.attentionDecode(path: path, q: q, group: 2, headDim: 8, k: k, v: v, type: .f32, ld: 32, ldv: 32, table: nil, block: 1,
                                    blockStride: 0, first: 0, keys: 20, scale: 0.3, softcap: 0, out: &out)
            #expect(out.allSatisfy { $0.isNaN }, "\(path): \(out)")
        }
    }

    /// K/V stored as f16, bf16 and q8_0 (and f32), on every path: the decode kernel against the
    /// naive attention over the values the stored rows hold (widened by `HalfConversion.toF32`,
    /// q8_0 by the dequantizer: other code than the kernel's), and the gather the prompt's
    /// attention reads equal to them. Rows hold two heads (head 1 is read: offsets past a whole
    /// head), K and V rows of different widths, through a reversed block table and contiguous;
    /// head dims 32, 64, 128 and 256 (q8_0's blocks; tiles of 64, 32 and 16 keys), and 12 and 80
    /// for the 16-bit types (tails).
    @Test(arguments: DType.kvTypes)
    func decodeAttentionOverStoredKVTypesOnEveryPath(type: DType) {
        let bs = 16
        var cases: [(group: Int, d: Int, n: Int, first: Int, paged: Bool)] = [
            (4, 32, 50, 0, true), (8, 64, 150, 0, true), (2, 128, 97, 5, false), (3, 256, 40, 0, true)]
        if type.blockElements == 1 { cases += [(3, 12, 70, 0, true), (2, 80, 65, 0, false)] }
        for c in cases {
            var rng = TestRNG(UInt64(c.group * 1000 + c.d * 10 + c.n) ^ UInt64(type.blockBytes))
            let blocks = (c.n + bs - 1) / bs, rows = blocks * bs
            let table = Array((0..<blocks).reversed())
            // row widths: head 1 of K rows of two heads, of V rows of three (of two through a table: one block stride)
            let wk = 2 * c.d, wv = c.paged ? wk : 3 * c.d
            let kf = rng.floats(rows * wk), vf = rng.floats(rows * wv), q = rng.floats(c.group * c.d)
            let ldk = type.bytes(elements: wk), ldv = type.bytes(elements: wv)
            var ks = [UInt8](repeating: 0, count: rows * ldk), vs = [UInt8](repeating: 0, count: rows * ldv)
            var kw = [Float](repeating: 0, count: rows * wk), vw = [Float](repeating: 0, count: rows * wv)
            for r in 0..<rows {
                ks.withUnsafeMutableBytes { KVRows.store(type, kf.withUnsafeBufferPointer { $0.baseAddress! + r * wk }, $0.baseAddress! + r * ldk, count: wk) }
                vs.withUnsafeMutableBytes { KVRows.store(type, vf.withUnsafeBufferPointer { $0.baseAddress! + r * wv }, $0.baseAddress! + r * ldv, count: wv) }
                ks.withUnsafeBytes { b in kw.withUnsafeMutableBufferPointer { HalfConversion.toF32(b.baseAddress! + r * ldk, dtype: type, $0.baseAddress! + r * wk, count: wk) } }
                vs.withUnsafeBytes { b in vw.withUnsafeMutableBufferPointer { HalfConversion.toF32(b.baseAddress! + r * ldv, dtype: type, $0.baseAddress! + r * wv, count: wv) } }
            }
            // the stored values are the rounded inputs: within the type's rounding
            let tol: Float = type == .f32 ? 0 : type == .f16 ? 1e-3 : 1e-2
            #expect(zip(kf, kw).allSatisfy { abs($0 - $1) <= tol * 2 }, "\(type): stored K rows far from the input")
            let off = type.bytes(elements: c.d)
            let row = { (j: Int) in c.paged ? table[j / bs] * bs + j % bs : j }
            let scale = 1 / Float(c.d).squareRoot()
            var ref = [Double](repeating: 0, count: c.group * c.d)
            for h in 0..<c.group {
                var w = (c.first..<c.n).map { j -> Double in
                    (0..<c.d).reduce(0.0) { $0 + Double(q[h * c.d + $1]) * Double(kw[row(j) * wk + c.d + $1]) } * Double(scale)
                }
                let m = w.max()!
                w = w.map { exp($0 - m) }
                let sum = w.reduce(0, +)
                for i in 0..<c.d {
                    ref[h * c.d + i] = w.indices.reduce(0.0) { $0 + w[$1] / sum * Double(vw[row(c.first + $1) * wv + c.d + i]) }
                }
            }
            for path in Kernels.supportedPaths {
                var out = [Float](repeating: .nan, count: c.group * c.d + 1)
                var gathered = [Float](repeating: .nan, count: (c.n - c.first) * c.d + 1)
                ks.withUnsafeBytes { kb in vs.withUnsafeBytes { vb in table.withUnsafeBufferPointer { t in
                    Kernels.attentionDecode(path: path, q: q, group: c.group, headDim: c.d, k: kb.baseAddress! + off, v: vb.baseAddress! + off,
                                            type: type, ld: ldk, ldv: ldv, table: c.paged ? t.baseAddress : nil, block: bs,
                                            blockStride: bs * ldk, first: c.first, keys: c.n, scale: scale, softcap: 0, out: &out)
                    Kernels.kvGather(path: path, type: type, src: vb.baseAddress! + off, ld: ldv, table: c.paged ? t.baseAddress : nil, block: bs,
                                     blockStride: bs * ldv, first: c.first, keys: c.n, headDim: c.d, dst: &gathered)
                } } }
                for i in 0..<(c.group * c.d) {
                    #expect(abs(Double(out[i]) - ref[i]) < 1e-5 * (1 + abs(ref[i])), "\(type) \(path) \(c) out \(i): \(out[i]) vs \(ref[i])")
                }
                #expect(out[c.group * c.d].isNaN, "\(type) \(path) \(c): wrote past the output")
                let wantGather = (c.first..<c.n).flatMap { j in (0..<c.d).map { vw[row(j) * wv + c.d + $0] } }
                #expect(Array(gathered.prefix(wantGather.count)) == wantGather, "\(type) \(path) \(c): gathered values differ")
                #expect(gathered[wantGather.count].isNaN, "\(type) \(path) \(c): gathered past the end")
            }
        }
    }

    @Test func kvTypesAreCheckedAgainstTheHeadSize() throws {
        #expect(try DType.kvType("F16", headDim: 12) == .f16)
        #expect(try DType.kvType("q8_0", headDim: 64) == .q8_0)
        #expect(throws: TensorError.self) { try DType.kvType("q8_0", headDim: 80) }
        #expect(throws: TensorError.self) { try DType.kvType("q4_0", headDim: 64) }
        #expect(throws: TensorError.self) { try DType.kvType("f8", headDim: 64) }
    }

    @Test func threadsSettingAppliesToBLASAndLoops() {
        let before = Threads.count
        Threads.set(1)
        #expect(BLAS.threads == 1 && Threads.count == 1)
        Threads.set(2)
        #expect(BLAS.threads == 2)
        var hit = [Int](repeating: 0, count: 1000)
        hit.withUnsafeMutableBufferPointer { p in
            let box = UncheckedSendable(p)
            Threads.parallelFor(1000) { r in for i in r { box.value[i] += 1 } }
        }
        #expect(hit.allSatisfy { $0 == 1 })
        Threads.set(before)
    }
}

@Suite struct FastExpTests {
    @Test func fastExpRelativeErrorBelow3e7() {
        var worst = 0.0
        var x: Float = -87
        while x <= 88 {
            let ref = exp(Double(x))
            worst = max(worst, abs(Double(Ops.fastExp(x)) - ref) / ref)
            x += 0.0137
        }
        #expect(worst < 3e-7, "worst relative error \(worst)")
        #expect(Ops.fastExp(0) == 1)
        #expect(Ops.fastExp(-.infinity) < 1e-37 && Ops.fastExp(-.infinity) >= 0)
        // NaN in, NaN out (it trapped converting NaN to an integer: a NaN weight crashed SwiGLU)
        #expect(Ops.fastExp(.nan).isNaN)
        #expect(Ops.fastExp(.infinity) > 1e38)
        let xs: [Float] = [1, .nan, -2, .infinity, -.infinity, 3]
        var g = xs, u = [Float](repeating: 1, count: xs.count)
        Ops.swiglu(&g, &u, count: xs.count)
        #expect(g[1].isNaN && abs(g[0] - 1 / (1 + exp(-1))) < 1e-6 && abs(g[5] - 3 / (1 + exp(-3))) < 1e-5)
    }
}
