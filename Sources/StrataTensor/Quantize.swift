import Foundation

/// f32 rows to ggml's quantized blocks by ggml's published reference formulas
/// (`quantize_row_*_ref` of ggml-quants.c, which llama-quantize runs without an importance
/// matrix), so a file Strata quantizes holds the blocks llama.cpp would write from the same
/// weights:
///
/// - Q8_0: d = max|x| / 127, q = round(x / d) (half away from zero).
/// - Q4_0: d = max / -8 (max: the value of largest magnitude), q = min(15, trunc(x / d + 8.5)).
/// - Q4_K: per sub-block of 32, a scale and min fitted by weighted least squares over 21 trial
///   scales (`make_qkx2_quants`, weights sqrt(mean x^2) + |x|); scales and mins quantized to 6
///   bits against the block's largest; codes re-rounded against the 6-bit values.
/// - Q6_K: per sub-block of 16, a scale from 19 trial scales weighted by x^2 (`make_qx_quants`);
///   8-bit sub-scales against the largest; codes in [-32, 31].
/// - Q4_1: d = (max - min) / 15, m = min; Q5_0: d = max / -16, codes + 16 in five bits.
/// - Q5_K: Q4_K's fit with 31 levels.
/// - MXFP4: e = floor(log2 max|x|) - 2 + 127 (0 for a block of zeros), each weight the nearest of
///   the sixteen FP4 values times 2^(e - 128) (the first on a tie).
public enum Quantizer {
    /// The types this quantizer writes (IQ4_NL and IQ4_XS are read, not written: their search
    /// for the best non-uniform scale is not here).
    public static let types: [DType] = [.q8_0, .q4_0, .q4_k, .q6_k, .q4_1, .q5_0, .q5_k, .mxfp4]

    /// Bytes of `count` f32 values (a multiple of the block) quantized to `dtype`, appended to `out`.
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, to dtype: DType, into out: UnsafeMutableRawPointer) {
        precondition(types.contains(dtype) && count % dtype.blockElements == 0, "Quantizer: \(count) values of \(dtype)")
        let be = dtype.blockElements, bb = dtype.blockBytes
        for b in 0..<(count / be) {
            let src = x + b * be, dst = out + b * bb
            switch dtype {
            case .q8_0: q8_0(src, dst)
            case .q4_0: q4_0(src, dst)
            case .q4_k: q4_k(src, dst)
            case .q6_k: q6_k(src, dst)
            case .q4_1: q4_1(src, dst)
            case .q5_0: q5_0(src, dst)
            case .q5_k: q5_k(src, dst)
            case .mxfp4: mxfp4(src, dst)
            default: preconditionFailure("Quantizer: no quantizer for \(dtype) (Quantizer.types)")
            }
        }
    }

    static let groupMaxEps: Float = 1e-15

    /// MXFP4's sixteen values, doubled (ggml's kvalues_mxfp4; the scale is halved to match).
    static let mxfp4Values: [Float] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]

    /// quantize_row_mxfp4_ref.
    static func mxfp4(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]) }
        // ggml's (uint8_t) cast of floor(log2) - 2 + 127: in range for every normal amax >= 2^-125
        let e = amax > 0 ? UInt8(clamping: Int(log2f(amax).rounded(.down)) - 2 + 127) : 0
        let d = Float(bitPattern: e < 2 ? UInt32(0x0020_0000) << e : UInt32(e - 1) << 23)
        y.storeBytes(of: e, as: UInt8.self)
        func best(_ v: Float) -> UInt8 {
            var bi = 0, be = abs(mxfp4Values[0] * d - v)
            for i in 1..<16 { let err = abs(mxfp4Values[i] * d - v); if err < be { bi = i; be = err } }
            return UInt8(bi)
        }
        let q = (y + 1).assumingMemoryBound(to: UInt8.self)
        for j in 0..<16 { q[j] = best(x[j]) | best(x[j + 16]) << 4 }
    }

    /// ggml's nearest_int: round half to even through the float magic number (|v| < 2^22).
    @inline(__always) static func nearestInt(_ v: Float) -> Int {
        let f = v + 12582912
        return Int(Int32(bitPattern: f.bitPattern & 0x007f_ffff) - 0x0040_0000)
    }

    @inline(__always) static func putF16(_ v: Float, _ p: UnsafeMutableRawPointer) {
        p.storeBytes(of: HalfConversion.f32ToF16(v).littleEndian, as: UInt16.self)
    }
    @inline(__always) static func f16(_ v: Float) -> Float { HalfConversion.f16ToF32(HalfConversion.f32ToF16(v)) }

    static func q8_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127, id = d != 0 ? 1 / d : 0
        putF16(d, y)
        let q = (y + 2).assumingMemoryBound(to: Int8.self)
        for j in 0..<32 { q[j] = Int8(clamping: Int((x[j] * id).rounded(.toNearestOrAwayFromZero))) }
    }

    static func q4_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, mx: Float = 0
        for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]); mx = x[j] }
        let d = mx / -8, id = d != 0 ? 1 / d : 0
        putF16(d, y)
        let q = (y + 2).assumingMemoryBound(to: UInt8.self)
        for j in 0..<16 {
            let a = min(15, Int(Int8(clamping: Int((x[j] * id + 8.5).rounded(.towardZero)))))
            let b = min(15, Int(Int8(clamping: Int((x[j + 16] * id + 8.5).rounded(.towardZero)))))
            q[j] = UInt8(truncatingIfNeeded: a) | UInt8(truncatingIfNeeded: b) << 4
        }
    }

    /// make_qkx2_quants(n, nmax, x, weights, L, &min, Laux, rmin, rdelta, nstep, use_mad = false).
    static func qkx2(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ L: UnsafeMutablePointer<UInt8>,
                     _ laux: UnsafeMutablePointer<UInt8>, rmin: Float, rdelta: Float, nstep: Int) -> (scale: Float, min: Float) {
        var mn = x[0], mx = x[0], sumW = w[0], sumX = w[0] * x[0]
        for i in 1..<n {
            if x[i] < mn { mn = x[i] }
            if x[i] > mx { mx = x[i] }
            sumW += w[i]
            sumX += w[i] * x[i]
        }
        if mn > 0 { mn = 0 }
        if mx == mn {
            for i in 0..<n { L[i] = 0 }
            return (0, -mn)
        }
        var iscale = Float(nmax) / (mx - mn)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = nearestInt(iscale * (x[i] - mn))
            L[i] = UInt8(max(0, min(nmax, l)))
            let diff = scale * Float(L[i]) + mn - x[i]
            bestError += w[i] * diff * diff
        }
        if nstep < 1 { return (scale, -mn) }
        for s in 0...nstep {
            iscale = (rmin + rdelta * Float(s) + Float(nmax)) / (mx - mn)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let l = max(0, min(nmax, nearestInt(iscale * (x[i] - mn))))
                laux[i] = UInt8(l)
                let fl = Float(l)
                sumL += w[i] * fl
                sumL2 += w[i] * fl * fl
                sumXL += w[i] * fl * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            if D > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / D
                var thisMin = (sumL2 * sumX - sumL * sumXL) / D
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var cur: Float = 0
                for i in 0..<n {
                    let diff = thisScale * Float(laux[i]) + thisMin - x[i]
                    cur += w[i] * diff * diff
                }
                if cur < bestError {
                    for i in 0..<n { L[i] = laux[i] }
                    bestError = cur
                    scale = thisScale
                    mn = thisMin
                }
            }
        }
        return (scale, -mn)
    }

    /// Q4_K's and Q5_K's shared part: per sub-block of 32, a scale and min fitted by
    /// make_qkx2_quants(32, nmax, rmin, rdelta, nstep) with weights sqrt(mean x^2) + |x|; d and dmin
    /// at y, y + 2 and the eight 6-bit scales and mins packed at y + 4; the codes (0...nmax) in L,
    /// re-rounded against the 6-bit values.
    static func kScalesMins(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, nmax: Int, rmin: Float, rdelta: Float, nstep: Int,
                            _ L: inout [UInt8]) {
        var laux = [UInt8](repeating: 0, count: 32)
        var weights = [Float](repeating: 0, count: 32), mins = [Float](repeating: 0, count: 8), scales = mins
        var maxScale: Float = 0, maxMin: Float = 0
        for j in 0..<8 {
            let s = x + 32 * j
            var sumX2: Float = 0
            for l in 0..<32 { sumX2 += s[l] * s[l] }
            let avX = (sumX2 / 32).squareRoot()
            for l in 0..<32 { weights[l] = avX + abs(s[l]) }
            let r = L.withUnsafeMutableBufferPointer { lp in
                laux.withUnsafeMutableBufferPointer { ap in
                    qkx2(32, nmax, s, weights, lp.baseAddress! + 32 * j, ap.baseAddress!, rmin: rmin, rdelta: rdelta, nstep: nstep)
                }
            }
            scales[j] = r.scale
            mins[j] = r.min
            maxScale = max(maxScale, r.scale)
            maxMin = max(maxMin, r.min)
        }
        let invScale: Float = maxScale > 0 ? 63 / maxScale : 0, invMin: Float = maxMin > 0 ? 63 / maxMin : 0
        let sc = (y + 4).assumingMemoryBound(to: UInt8.self)
        for j in 0..<12 { sc[j] = 0 }
        var ls = [UInt8](repeating: 0, count: 8), lm = ls
        for j in 0..<8 {
            ls[j] = UInt8(min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j]))))
            lm[j] = UInt8(min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j]))))
            if j < 4 {
                sc[j] = ls[j]
                sc[j + 4] = lm[j]
            } else {
                sc[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4)
                sc[j - 4] |= (ls[j] >> 4) << 6
                sc[j] |= (lm[j] >> 4) << 6
            }
        }
        putF16(maxScale / 63, y)
        putF16(maxMin / 63, y + 2)
        let d16 = f16(maxScale / 63), dmin16 = f16(maxMin / 63)
        for j in 0..<8 {
            let d = d16 * Float(ls[j])
            if d == 0 { continue }
            let dm = dmin16 * Float(lm[j])
            for i in 0..<32 { L[32 * j + i] = UInt8(max(0, min(nmax, nearestInt((x[32 * j + i] + dm) / d)))) }
        }
    }

    static func q4_k(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var L = [UInt8](repeating: 0, count: 256)
        kScalesMins(x, y, nmax: 15, rmin: -1, rdelta: 0.1, nstep: 20, &L)
        let q = (y + 16).assumingMemoryBound(to: UInt8.self)
        for c in 0..<4 {
            for l in 0..<32 { q[32 * c + l] = L[64 * c + l] | (L[64 * c + l + 32] << 4) }
        }
    }

    /// quantize_row_q5_K_ref: Q4_K's fit with 31 levels (rmin -0.5, 15 steps); the fifth bit of
    /// sub-block s in bit s of qh.
    static func q5_k(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var L = [UInt8](repeating: 0, count: 256)
        kScalesMins(x, y, nmax: 31, rmin: -0.5, rdelta: 0.1, nstep: 15, &L)
        let qh = (y + 16).assumingMemoryBound(to: UInt8.self), ql = (y + 48).assumingMemoryBound(to: UInt8.self)
        for l in 0..<32 { qh[l] = 0 }
        for c in 0..<4 {
            for l in 0..<32 {
                let a = L[64 * c + l], b = L[64 * c + 32 + l]
                ql[32 * c + l] = (a & 15) | (b & 15) << 4
                qh[l] |= (a >> 4) << UInt8(2 * c) | (b >> 4) << UInt8(2 * c + 1)
            }
        }
    }

    /// quantize_row_q4_1_ref: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5)).
    static func q4_1(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var mn = Float.greatestFiniteMagnitude, mx = -Float.greatestFiniteMagnitude
        for j in 0..<32 { mn = min(mn, x[j]); mx = max(mx, x[j]) }
        let d = (mx - mn) / 15, id = d != 0 ? 1 / d : 0
        putF16(d, y)
        putF16(mn, y + 2)
        let q = (y + 4).assumingMemoryBound(to: UInt8.self)
        for j in 0..<16 {
            let a = min(15, Int(Int8(clamping: Int(((x[j] - mn) * id + 0.5).rounded(.towardZero)))))
            let b = min(15, Int(Int8(clamping: Int(((x[j + 16] - mn) * id + 0.5).rounded(.towardZero)))))
            q[j] = UInt8(truncatingIfNeeded: a) | UInt8(truncatingIfNeeded: b) << 4
        }
    }

    /// quantize_row_q5_0_ref: d = max / -16 (max: the value of largest magnitude),
    /// q = min(31, trunc(x / d + 16.5)), the fifth bit of weight i in bit i of qh.
    static func q5_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, mx: Float = 0
        for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]); mx = x[j] }
        let d = mx / -16, id = d != 0 ? 1 / d : 0
        putF16(d, y)
        var qh: UInt32 = 0
        let q = (y + 6).assumingMemoryBound(to: UInt8.self)
        for j in 0..<16 {
            let a = min(31, Int(Int8(clamping: Int((x[j] * id + 16.5).rounded(.towardZero)))))
            let b = min(31, Int(Int8(clamping: Int((x[j + 16] * id + 16.5).rounded(.towardZero)))))
            q[j] = UInt8(truncatingIfNeeded: a & 15) | UInt8(truncatingIfNeeded: b & 15) << 4
            qh |= UInt32((a >> 4) & 1) << UInt32(j) | UInt32((b >> 4) & 1) << UInt32(j + 16)
        }
        (y + 2).storeBytes(of: qh.littleEndian, as: UInt32.self)
    }

    /// make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = nil): codes in L as l + nmax.
    static func qx(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>) -> Float {
        var mx: Float = 0, amax: Float = 0
        for i in 0..<n where abs(x[i]) > amax { amax = abs(x[i]); mx = x[i] }
        if amax < groupMaxEps {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        var iscale = -Float(nmax) / mx
        var sumLX: Float = 0, sumL2: Float = 0
        for i in 0..<n {
            let l = max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))
            L[i] = Int8(l + nmax)
            let w = x[i] * x[i], fl = Float(l)
            sumLX += w * x[i] * fl
            sumL2 += w * fl * fl
        }
        var scale = sumL2 != 0 ? sumLX / sumL2 : 0
        var best = scale * sumLX
        for s in -9...9 where s != 0 {
            iscale = -(Float(nmax) + 0.1 * Float(s)) / mx
            sumLX = 0; sumL2 = 0
            for i in 0..<n {
                let fl = Float(max(-nmax, min(nmax - 1, nearestInt(iscale * x[i]))))
                let w = x[i] * x[i]
                sumLX += w * x[i] * fl
                sumL2 += w * fl * fl
            }
            if sumL2 > 0 && sumLX * sumLX > best * sumL2 {
                for i in 0..<n { L[i] = Int8(nmax + max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))) }
                scale = sumLX / sumL2
                best = scale * sumLX
            }
        }
        return scale
    }

    static func q6_k(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var L = [Int8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 16)
        var maxScale: Float = 0, maxAbs: Float = 0
        for ib in 0..<16 {
            let s = L.withUnsafeMutableBufferPointer { qx(16, 32, x + 16 * ib, $0.baseAddress! + 16 * ib) }
            scales[ib] = s
            if abs(s) > maxAbs { maxAbs = abs(s); maxScale = s }
        }
        let yb = y.assumingMemoryBound(to: UInt8.self)
        if maxAbs < groupMaxEps {
            for i in 0..<210 { yb[i] = 0 }
            return
        }
        let iscale = -128 / maxScale
        putF16(1 / iscale, y + 208)
        let d16 = f16(1 / iscale)
        let sc = (y + 192).assumingMemoryBound(to: Int8.self)
        for ib in 0..<16 { sc[ib] = Int8(truncatingIfNeeded: min(127, nearestInt(iscale * scales[ib]))) }
        for j in 0..<16 {
            let d = d16 * Float(sc[j])
            if d == 0 { continue }
            for i in 0..<16 { L[16 * j + i] = Int8(max(-32, min(31, nearestInt(x[16 * j + i] / d))) + 32) }
        }
        let ql = yb, qh = yb + 128
        for h in 0..<2 {
            let j = 128 * h
            for l in 0..<32 {
                let a = UInt8(bitPattern: L[j + l]), b = UInt8(bitPattern: L[j + l + 32])
                let c = UInt8(bitPattern: L[j + l + 64]), e = UInt8(bitPattern: L[j + l + 96])
                ql[64 * h + l] = (a & 0xF) | ((c & 0xF) << 4)
                ql[64 * h + l + 32] = (b & 0xF) | ((e & 0xF) << 4)
                qh[32 * h + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6)
            }
        }
    }
}
