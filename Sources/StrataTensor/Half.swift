/// Conversions between f32 and the 16-bit storage types.
///
/// f16 (IEEE binary16) and bf16 (the top half of an f32) are converted with
/// integer bit operations, exactly (f16/bf16 -> f32 is exact; f32 -> 16-bit
/// rounds to nearest even, keeps NaN a NaN and Inf an Inf, and produces
/// subnormals). The loops are branch-light so the compiler vectorizes them.
public enum HalfConversion {
    /// Exact f16 bits -> f32.
    @inlinable @inline(__always)
    public static func f16ToF32(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1F
        let mant = UInt32(h) & 0x3FF
        if exp == 0x1F {  // Inf / NaN
            return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13))
        }
        if exp == 0 {
            // zero or subnormal: value = mant * 2^-24, exact in f32
            let v = Float(mant) * 5.960464477539063e-08
            return Float(bitPattern: v.bitPattern | sign)
        }
        return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
    }

    /// f32 -> f16 bits, round to nearest even; overflow -> Inf; NaN stays NaN (quiet).
    @inlinable @inline(__always)
    public static func f32ToF16(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        let sign = UInt16((x >> 16) & 0x8000)
        let absx = x & 0x7FFF_FFFF
        if absx >= 0x7F80_0000 {  // Inf or NaN
            if absx > 0x7F80_0000 {
                return sign | 0x7E00 | UInt16((absx >> 13) & 0x3FF)
            }
            return sign | 0x7C00
        }
        if absx >= 0x4780_0000 {  // >= 65536: overflow to Inf (65520 rounds up too, handled below)
            return sign | 0x7C00
        }
        if absx < 0x3880_0000 {  // below smallest normal f16 (2^-14): subnormal or zero
            // value / 2^-24 rounded to nearest even, via float arithmetic (exact for this range)
            let v = Float(bitPattern: absx) * 16_777_216.0  // * 2^24
            let r = v.rounded(.toNearestOrEven)
            return sign | UInt16(r)
        }
        // normal: rebias exponent, round mantissa 23 -> 10 bits to nearest even
        let rebased = absx &- 0x3800_0000  // exponent - 112
        let roundBit: UInt32 = 0x1000
        let lsb = (rebased >> 13) & 1
        let rounded = rebased &+ (roundBit - 1) &+ lsb
        let h = rounded >> 13
        return sign | UInt16(min(h, 0x7C00))
    }

    /// Exact bf16 bits -> f32.
    @inlinable @inline(__always)
    public static func bf16ToF32(_ b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// f32 -> bf16 bits, round to nearest even; NaN stays NaN (quiet).
    @inlinable @inline(__always)
    public static func f32ToBF16(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        if (x & 0x7FFF_FFFF) > 0x7F80_0000 {
            return UInt16(x >> 16) | 0x0040
        }
        let lsb = (x >> 16) & 1
        return UInt16((x &+ 0x7FFF &+ lsb) >> 16)
    }

    /// Converts `count` f16 values to f32.
    public static func f16ToF32(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { dst[i] = f16ToF32(src[i]) }
    }

    /// Converts `count` bf16 values to f32.
    public static func bf16ToF32(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { dst[i] = Float(bitPattern: UInt32(src[i]) << 16) }
    }

    /// Converts `count` f32 values to f16.
    public static func f32ToF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        for i in 0..<count { dst[i] = f32ToF16(src[i]) }
    }

    /// Converts `count` f32 values to bf16.
    public static func f32ToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        for i in 0..<count { dst[i] = f32ToBF16(src[i]) }
    }

    /// Converts `count` elements of `dtype` at `src` into f32 at `dst` (quantized types: `count`
    /// a multiple of the block, dequantized by the kernel layer).
    public static func toF32(_ src: UnsafeRawPointer, dtype: DType, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        switch dtype {
        case .f32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .f16: f16ToF32(src.assumingMemoryBound(to: UInt16.self), dst, count: count)
        case .bf16: bf16ToF32(src.assumingMemoryBound(to: UInt16.self), dst, count: count)
        default: Kernels.dequantize(src, dtype: dtype, dst, count: count)
        }
    }
}
