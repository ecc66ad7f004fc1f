/// An n-dimensional array: shape, strides (in elements), an element offset and
/// shared storage. Views (`slice`, `reshaped`, `transposed`) share storage and
/// copy nothing. Row-major strides by default.
public struct Tensor: @unchecked Sendable {
    public let storage: TensorStorage
    public let dtype: DType
    /// Extent of each dimension, outermost first.
    public let shape: [Int]
    /// Distance in elements between neighbours along each dimension.
    public let strides: [Int]
    /// Offset of element [0, 0, ...] from `storage.base`, in elements.
    public let offset: Int

    public init(storage: TensorStorage, dtype: DType, shape: [Int], strides: [Int]? = nil, offset: Int = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in \(shape)")
        let st = strides ?? Tensor.rowMajorStrides(shape)
        precondition(st.count == shape.count, "Tensor: \(shape.count) dims but \(st.count) strides")
        // bounds: the largest reachable element must lie inside storage
        if !shape.contains(0) {
            var maxIndex = offset
            var minIndex = offset
            for (d, s) in zip(shape, st) {
                if s >= 0 { maxIndex += (d - 1) * s } else { minIndex += (d - 1) * s }
            }
            precondition(minIndex >= 0 && dtype.bytes(elements: maxIndex + 1) <= storage.byteCount,
                         "Tensor: view \(shape) strides \(st) offset \(offset) exceeds storage of \(storage.byteCount) bytes")
        }
        self.storage = storage
        self.dtype = dtype
        self.shape = shape
        self.strides = st
        self.offset = offset
    }

    /// A new zero-filled, owned, contiguous tensor.
    public init(zeros shape: [Int], dtype: DType = .f32) {
        let count = shape.reduce(1, *)
        self.init(storage: TensorStorage(byteCount: dtype.bytes(elements: count)), dtype: dtype, shape: shape)
    }

    /// A new owned f32 tensor holding `values` (row-major).
    public init(_ values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "Tensor: \(values.count) values for shape \(shape)")
        self.init(zeros: shape, dtype: .f32)
        let p = storage.base.assumingMemoryBound(to: Float.self)
        values.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: values.count) }
    }

    public static func rowMajorStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = acc
            acc *= shape[i]
        }
        return strides
    }

    public var rank: Int { shape.count }
    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { dtype.bytes(elements: count) }
    public var isContiguous: Bool { strides == Tensor.rowMajorStrides(shape) }

    /// Raw pointer to element [0, 0, ...] (for a quantized tensor, to the block it starts).
    public var rawPointer: UnsafeMutableRawPointer { storage.base + dtype.bytes(elements: offset) }

    /// Bytes of one row (the last dimension) of a contiguous tensor.
    public var rowBytes: Int { dtype.bytes(elements: shape.last ?? 1) }

    /// Pointer to element [0, 0, ...] of an f32 tensor.
    public var f32: UnsafeMutablePointer<Float> {
        precondition(dtype == .f32, "Tensor.f32 on a \(dtype) tensor")
        return rawPointer.assumingMemoryBound(to: Float.self)
    }

    /// Element at a multi-index, converted to Float (for tests and small reads).
    public subscript(_ index: Int...) -> Float {
        get {
            precondition(index.count == rank, "Tensor: \(index.count) indices for rank \(rank)")
            var e = offset
            for (i, (x, s)) in zip(index, zip(shape, strides)).enumerated() {
                precondition(x >= 0 && x < s.0, "Tensor: index \(x) out of range \(s.0) in dim \(i)")
                e += x * s.1
            }
            return Tensor.load(storage.base, element: e, dtype: dtype)
        }
        nonmutating set {
            precondition(index.count == rank, "Tensor: \(index.count) indices for rank \(rank)")
            precondition(dtype == .f32, "Tensor: element assignment on a \(dtype) tensor")
            var e = offset
            for (x, s) in zip(index, zip(shape, strides)) {
                precondition(x >= 0 && x < s.0, "Tensor: index \(x) out of range \(s.0)")
                e += x * s.1
            }
            storage.base.assumingMemoryBound(to: Float.self)[e] = newValue
        }
    }

    @inline(__always)
    static func load(_ base: UnsafeMutableRawPointer, element e: Int, dtype: DType) -> Float {
        switch dtype {
        case .f32: return base.assumingMemoryBound(to: Float.self)[e]
        case .f16: return HalfConversion.f16ToF32(base.assumingMemoryBound(to: UInt16.self)[e])
        case .bf16: return HalfConversion.bf16ToF32(base.assumingMemoryBound(to: UInt16.self)[e])
        default:
            // the block holding element e, dequantized (tests and small reads)
            let be = dtype.blockElements
            var block = [Float](repeating: 0, count: be)
            HalfConversion.toF32(base + e / be * dtype.blockBytes, dtype: dtype, &block, count: be)
            return block[e % be]
        }
    }

    // MARK: views

    /// Rows `range` along dimension `dim`; shares storage.
    public func slice(dim: Int = 0, _ range: Range<Int>) -> Tensor {
        precondition(dim >= 0 && dim < rank, "slice: dim \(dim) for rank \(rank)")
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[dim], "slice: \(range) outside 0..<\(shape[dim])")
        var s = shape
        s[dim] = range.count
        return Tensor(storage: storage, dtype: dtype, shape: s, strides: strides, offset: offset + range.lowerBound * strides[dim])
    }

    /// The same elements with a new shape; requires a contiguous tensor.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(isContiguous, "reshaped: tensor is not contiguous (strides \(strides))")
        precondition(newShape.reduce(1, *) == count, "reshaped: \(shape) has \(count) elements, \(newShape) does not")
        return Tensor(storage: storage, dtype: dtype, shape: newShape, offset: offset)
    }

    /// Swaps two dimensions (default: the last two); shares storage.
    public func transposed(_ a: Int? = nil, _ b: Int? = nil) -> Tensor {
        let i = a ?? rank - 2, j = b ?? rank - 1
        precondition(i >= 0 && j >= 0 && i < rank && j < rank, "transposed: dims \(i), \(j) for rank \(rank)")
        var s = shape, st = strides
        s.swapAt(i, j)
        st.swapAt(i, j)
        return Tensor(storage: storage, dtype: dtype, shape: s, strides: st, offset: offset)
    }

    /// A contiguous f32 copy (converting f16/bf16, gathering strided views).
    public func contiguousF32() -> Tensor {
        let out = Tensor(zeros: shape, dtype: .f32)
        let n = count
        if n == 0 { return out }
        if isContiguous {
            HalfConversion.toF32(rawPointer, dtype: dtype, out.f32, count: n)
            return out
        }
        let dst = out.f32
        var idx = [Int](repeating: 0, count: rank)
        for k in 0..<n {
            var e = offset
            for d in 0..<rank { e += idx[d] * strides[d] }
            dst[k] = Tensor.load(storage.base, element: e, dtype: dtype)
            var d = rank - 1
            while d >= 0 {
                idx[d] += 1
                if idx[d] < shape[d] { break }
                idx[d] = 0
                d -= 1
            }
        }
        return out
    }

    /// All elements as Floats, row-major (for tests and small outputs).
    public func toArray() -> [Float] {
        let c = contiguousF32()
        return Array(UnsafeBufferPointer(start: c.f32, count: c.count))
    }

    /// Throws `TensorError.shapeMismatch` when the shape is not `expected`; for
    /// shapes that come from input (files, user arguments).
    public func expectShape(_ expected: [Int], _ context: @autoclosure () -> String) throws {
        if shape != expected {
            throw TensorError.shapeMismatch(context: context(), expected: expected, actual: shape)
        }
    }
}
