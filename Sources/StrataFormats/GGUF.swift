import Foundation
import StrataTensor

/// Errors reading a GGUF file; each names the file and the key or tensor.
public enum GGUFError: Error, CustomStringConvertible, Equatable, Sendable {
    case notGGUF(file: String, reason: String)
    case unsupportedVersion(file: String, version: UInt32)
    case truncated(file: String, at: Int, need: String)
    case invalid(file: String, field: String, reason: String)
    case duplicateKey(file: String, key: String)
    case duplicateTensor(file: String, tensor: String)
    case unknownType(file: String, tensor: String, type: UInt32)
    case unsupportedType(file: String, tensor: String, type: String)
    case badShape(file: String, tensor: String, reason: String)
    case offsetOutOfRange(file: String, tensor: String, offset: Int, bytes: Int, dataSize: Int)
    case overlap(file: String, tensor: String, other: String)
    case missingKey(file: String, key: String)
    case wrongKeyType(file: String, key: String, expected: String)

    public var description: String {
        switch self {
        case let .notGGUF(f, r): return "\(f): not a GGUF file: \(r)"
        case let .unsupportedVersion(f, v): return "\(f): GGUF version \(v) is not supported (2 and 3 are)"
        case let .truncated(f, at, need): return "\(f): truncated at byte \(at): \(need) goes past the end of the file"
        case let .invalid(f, field, r): return "\(f): \(field): \(r)"
        case let .duplicateKey(f, k): return "\(f): metadata key '\(k)' appears twice"
        case let .duplicateTensor(f, t): return "\(f): tensor '\(t)' appears twice"
        case let .unknownType(f, t, ty): return "\(f): tensor '\(t)' has unknown ggml type \(ty)"
        case let .unsupportedType(f, t, ty):
            return "\(f): tensor '\(t)' has type \(ty); Strata reads \(DType.allCases.map { $0.rawValue.uppercased() }.joined(separator: ", "))"
        case let .badShape(f, t, r): return "\(f): tensor '\(t)': \(r)"
        case let .offsetOutOfRange(f, t, o, b, n):
            return "\(f): tensor '\(t)' at data offset \(o) with \(b) bytes lies outside the data section of \(n) bytes"
        case let .overlap(f, t, o): return "\(f): tensors '\(t)' and '\(o)' overlap"
        case let .missingKey(f, k): return "\(f): metadata key '\(k)' is missing"
        case let .wrongKeyType(f, k, e): return "\(f): metadata key '\(k)' is not \(e)"
        }
    }
}

/// A metadata value, with the GGUF type it was written as (so a file round-trips).
public indirect enum GGUFValue: Sendable, Equatable {
    case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), u64(UInt64), i64(Int64)
    case f32(Float), f64(Double), bool(Bool), string(String)
    /// Element type id and elements (all of that type).
    case array(GGUFValueType, [GGUFValue])

    /// An integer value (any width) that fits in Int.
    public var int: Int? {
        switch self {
        case let .u8(v): return Int(v)
        case let .i8(v): return Int(v)
        case let .u16(v): return Int(v)
        case let .i16(v): return Int(v)
        case let .u32(v): return Int(v)
        case let .i32(v): return Int(v)
        case let .u64(v): return v <= UInt64(Int.max) ? Int(v) : nil
        case let .i64(v): return Int(v)
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case let .f32(v): return Double(v)
        case let .f64(v): return v
        default: return int.map(Double.init)
        }
    }
    public var bool: Bool? { if case let .bool(b) = self { return b }; return nil }
    public var string: String? { if case let .string(s) = self { return s }; return nil }
    public var array: [GGUFValue]? { if case let .array(_, a) = self { return a }; return nil }

    var type: GGUFValueType {
        switch self {
        case .u8: return .u8
        case .i8: return .i8
        case .u16: return .u16
        case .i16: return .i16
        case .u32: return .u32
        case .i32: return .i32
        case .u64: return .u64
        case .i64: return .i64
        case .f32: return .f32
        case .f64: return .f64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }
}

/// GGUF's metadata value types (gguf_type).
public enum GGUFValueType: UInt32, Sendable {
    case u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, bool = 7, string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12

    /// Bytes of a fixed-size value (nil for string and array).
    var fixedSize: Int? {
        switch self {
        case .u8, .i8, .bool: return 1
        case .u16, .i16: return 2
        case .u32, .i32, .f32: return 4
        case .u64, .i64, .f64: return 8
        case .string, .array: return nil
        }
    }
}

/// ggml's tensor types: id, name, weights per block and bytes per block (ggml.c's type traits).
public struct GGMLType: Sendable, Equatable {
    public let id: UInt32
    public let name: String
    public let blockElements: Int
    public let blockBytes: Int

    /// Every type a GGUF file may hold (sizes for validating any file); `dtype` says which Strata computes with.
    public static let all: [GGMLType] = [
        .init(id: 0, name: "F32", blockElements: 1, blockBytes: 4), .init(id: 1, name: "F16", blockElements: 1, blockBytes: 2),
        .init(id: 2, name: "Q4_0", blockElements: 32, blockBytes: 18), .init(id: 3, name: "Q4_1", blockElements: 32, blockBytes: 20),
        .init(id: 6, name: "Q5_0", blockElements: 32, blockBytes: 22), .init(id: 7, name: "Q5_1", blockElements: 32, blockBytes: 24),
        .init(id: 8, name: "Q8_0", blockElements: 32, blockBytes: 34), .init(id: 9, name: "Q8_1", blockElements: 32, blockBytes: 36),
        .init(id: 10, name: "Q2_K", blockElements: 256, blockBytes: 84), .init(id: 11, name: "Q3_K", blockElements: 256, blockBytes: 110),
        .init(id: 12, name: "Q4_K", blockElements: 256, blockBytes: 144), .init(id: 13, name: "Q5_K", blockElements: 256, blockBytes: 176),
        .init(id: 14, name: "Q6_K", blockElements: 256, blockBytes: 210), .init(id: 15, name: "Q8_K", blockElements: 256, blockBytes: 292),
        .init(id: 16, name: "IQ2_XXS", blockElements: 256, blockBytes: 66), .init(id: 17, name: "IQ2_XS", blockElements: 256, blockBytes: 74),
        .init(id: 18, name: "IQ3_XXS", blockElements: 256, blockBytes: 98), .init(id: 19, name: "IQ1_S", blockElements: 256, blockBytes: 50),
        .init(id: 20, name: "IQ4_NL", blockElements: 32, blockBytes: 18), .init(id: 21, name: "IQ3_S", blockElements: 256, blockBytes: 110),
        .init(id: 22, name: "IQ2_S", blockElements: 256, blockBytes: 82), .init(id: 23, name: "IQ4_XS", blockElements: 256, blockBytes: 136),
        .init(id: 24, name: "I8", blockElements: 1, blockBytes: 1), .init(id: 25, name: "I16", blockElements: 1, blockBytes: 2),
        .init(id: 26, name: "I32", blockElements: 1, blockBytes: 4), .init(id: 27, name: "I64", blockElements: 1, blockBytes: 8),
        .init(id: 28, name: "F64", blockElements: 1, blockBytes: 8), .init(id: 29, name: "IQ1_M", blockElements: 256, blockBytes: 56),
        .init(id: 30, name: "BF16", blockElements: 1, blockBytes: 2),
        .init(id: 34, name: "TQ1_0", blockElements: 256, blockBytes: 54), .init(id: 35, name: "TQ2_0", blockElements: 256, blockBytes: 66),
        .init(id: 39, name: "MXFP4", blockElements: 32, blockBytes: 17),
    ]
    static let byID: [UInt32: GGMLType] = Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) })

    static let byName: [String: GGMLType] = Dictionary(uniqueKeysWithValues: all.map { ($0.name.lowercased(), $0) })

    /// The Strata dtype of this type (the same name), nil when Strata cannot compute with it.
    public var dtype: DType? { DType(rawValue: name.lowercased()) }

    /// The ggml type of a Strata dtype (the same name; every dtype is one of ggml's types).
    public static func of(_ d: DType) -> GGMLType {
        guard let t = byName[d.rawValue] else { fatalError("DType.\(d) is not one of ggml's types (GGMLType.all)") }
        return t
    }
}

/// One tensor of a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml's dims, innermost first (`ne`).
    public let dims: [Int]
    public let type: GGMLType
    /// Row-major shape, outermost first (dims reversed): an `[out, in]` weight has dims `[in, out]`.
    public var shape: [Int] { dims.reversed() }
    /// Absolute byte range in the file.
    public let begin: Int
    public let end: Int
    public var byteCount: Int { end - begin }
}

/// A GGUF file (llama.cpp's format, versions 2 and 3): magic `GGUF`, version, tensor count,
/// metadata count, the metadata key-values, the tensor infos, padding to `general.alignment`
/// (default 32), then the tensor data, each tensor at an aligned offset from the data start.
///
/// `init(path:)` maps the file and reads and validates everything before the data: every
/// length, count and offset is checked against the bytes that remain (a lying count cannot make
/// it allocate or read past the end), keys and tensor names are unique, each tensor's dims
/// multiply without overflow to whole blocks of a known type, and its bytes lie inside the data
/// section without overlapping another tensor. Tensors are then zero-copy views of the mapping.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let fileSize: Int
    /// Metadata in file order, and by key.
    public let keys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensors in file order, and by name.
    public let tensors: [GGUFTensorInfo]
    public let tensorsByName: [String: GGUFTensorInfo]
    public let alignment: Int
    public let dataStart: Int
    let mapping: MappedFile

    public static let magic: [UInt8] = Array("GGUF".utf8)
    /// Most dims a ggml tensor has.
    static let maxDims = 4

    public init(path: String) throws {
        try FileIO.requireRegularFile(path)
        let m = try MappedFile(path: path)
        mapping = m
        self.path = path
        fileSize = m.size
        guard m.size >= 24, let base = m.base else {
            throw GGUFError.notGGUF(file: path, reason: "\(m.size) bytes, a GGUF header needs at least 24")
        }
        var r = Reader(base: UnsafeRawPointer(base), size: m.size, file: path)
        guard Array(UnsafeRawBufferPointer(start: base, count: 4)) == GGUFFile.magic else {
            throw GGUFError.notGGUF(file: path, reason: "the first four bytes are not 'GGUF'")
        }
        r.pos = 4
        version = try r.u32("version")
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(file: path, version: version) }
        let tensorCount = try r.count("tensor_count", minBytesEach: 24)
        let kvCount = try r.count("metadata_kv_count", minBytesEach: 13)
        var keys: [String] = []
        var meta: [String: GGUFValue] = [:]
        keys.reserveCapacity(kvCount)
        for _ in 0..<kvCount {
            let key = try r.string("metadata key")
            let t = try r.u32("type of '\(key)'")
            guard let type = GGUFValueType(rawValue: t) else {
                throw GGUFError.invalid(file: path, field: key, reason: "unknown value type \(t)")
            }
            let v = try r.value(type, key: key, depth: 0)
            guard meta[key] == nil else { throw GGUFError.duplicateKey(file: path, key: key) }
            meta[key] = v
            keys.append(key)
        }
        self.keys = keys
        metadata = meta
        var align = 32
        if let a = meta["general.alignment"] {
            guard case let .u32(v) = a else { throw GGUFError.wrongKeyType(file: path, key: "general.alignment", expected: "a uint32") }
            guard v > 0, v & (v - 1) == 0, v <= 1 << 20 else {
                throw GGUFError.invalid(file: path, field: "general.alignment", reason: "\(v) is not a power of two up to 1 MiB")
            }
            align = Int(v)
        }
        alignment = align
        var raw: [(name: String, dims: [Int], type: GGMLType, offset: Int)] = []
        raw.reserveCapacity(tensorCount)
        var seen = Set<String>()
        for _ in 0..<tensorCount {
            let name = try r.string("tensor name")
            guard seen.insert(name).inserted else { throw GGUFError.duplicateTensor(file: path, tensor: name) }
            let nd = try r.u32("n_dims of '\(name)'")
            guard nd >= 1 && nd <= UInt32(GGUFFile.maxDims) else {
                throw GGUFError.badShape(file: path, tensor: name, reason: "\(nd) dims (1 to \(GGUFFile.maxDims) allowed)")
            }
            var dims: [Int] = []
            for d in 0..<Int(nd) {
                let v = try r.u64("dim \(d) of '\(name)'")
                guard v <= UInt64(Int.max) else { throw GGUFError.badShape(file: path, tensor: name, reason: "dim \(d) is \(v)") }
                dims.append(Int(v))
            }
            let tid = try r.u32("type of '\(name)'")
            guard let type = GGMLType.byID[tid] else { throw GGUFError.unknownType(file: path, tensor: name, type: tid) }
            let off = try r.u64("offset of '\(name)'")
            guard off <= UInt64(Int.max) else {
                throw GGUFError.offsetOutOfRange(file: path, tensor: name, offset: Int.max, bytes: 0, dataSize: 0)
            }
            raw.append((name, dims, type, Int(off)))
        }
        let start = (r.pos + align - 1) / align * align
        guard start <= m.size else { throw GGUFError.truncated(file: path, at: r.pos, need: "padding to the data section") }
        dataStart = start
        let dataSize = m.size - start
        var infos: [GGUFTensorInfo] = []
        for t in raw {
            var count = 1
            for d in t.dims {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                guard !o else { throw GGUFError.badShape(file: path, tensor: t.name, reason: "dims \(t.dims) multiply past \(Int.max)") }
                count = p
            }
            guard t.dims[0] % t.type.blockElements == 0 else {
                throw GGUFError.badShape(file: path, tensor: t.name,
                                         reason: "rows of \(t.dims[0]) are not whole \(t.type.name) blocks of \(t.type.blockElements)")
            }
            let (bytes, o) = (count / t.type.blockElements).multipliedReportingOverflow(by: t.type.blockBytes)
            guard !o, t.offset % align == 0, t.offset <= dataSize, bytes <= dataSize - t.offset else {
                throw GGUFError.offsetOutOfRange(file: path, tensor: t.name, offset: t.offset, bytes: o ? Int.max : bytes, dataSize: dataSize)
            }
            infos.append(GGUFTensorInfo(name: t.name, dims: t.dims, type: t.type, begin: start + t.offset, end: start + t.offset + bytes))
        }
        var prev: GGUFTensorInfo?
        for t in infos.sorted(by: { $0.begin < $1.begin || ($0.begin == $1.begin && $0.end < $1.end) }) where t.byteCount > 0 {
            if let p = prev, t.begin < p.end { throw GGUFError.overlap(file: path, tensor: t.name, other: p.name) }
            prev = t
        }
        tensors = infos
        tensorsByName = Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) })
    }

    /// A zero-copy view of tensor `name` with its row-major shape.
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensorsByName[name] else { throw SafetensorsError.missingTensor(name: name, checkpoint: path) }
        guard let dtype = t.type.dtype else { throw GGUFError.unsupportedType(file: path, tensor: name, type: t.type.name) }
        return Tensor(storage: mapping.storage(offset: t.begin, count: t.byteCount), dtype: dtype, shape: t.shape)
    }

    /// The mapping (shared by every view).
    public var mapped: MappedFile { mapping }

    // MARK: typed metadata access

    public func value(_ key: String) -> GGUFValue? { metadata[key] }

    public func int(_ key: String) throws -> Int? {
        guard let v = metadata[key] else { return nil }
        guard let i = v.int, v.bool == nil else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "an integer") }
        return i
    }
    public func requireInt(_ key: String) throws -> Int {
        guard let v = try int(key) else { throw GGUFError.missingKey(file: path, key: key) }
        return v
    }
    public func double(_ key: String) throws -> Double? {
        guard let v = metadata[key] else { return nil }
        guard let d = v.double, v.bool == nil else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "a number") }
        return d
    }
    public func string(_ key: String) throws -> String? {
        guard let v = metadata[key] else { return nil }
        guard let s = v.string else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "a string") }
        return s
    }
    public func bool(_ key: String) throws -> Bool? {
        guard let v = metadata[key] else { return nil }
        guard let b = v.bool else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "a bool") }
        return b
    }
    public func strings(_ key: String) throws -> [String]? {
        guard let v = metadata[key] else { return nil }
        guard case let .array(t, a) = v, t == .string else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "an array of strings") }
        return a.map { $0.string ?? "" }
    }
    /// An array of integers (any width), each fitting in Int.
    public func ints(_ key: String) throws -> [Int]? {
        guard let v = metadata[key] else { return nil }
        guard case let .array(t, a) = v, t != .string, t != .array, t != .bool, t != .f32, t != .f64 else {
            throw GGUFError.wrongKeyType(file: path, key: key, expected: "an array of integers")
        }
        return try a.map { e in
            guard let i = e.int else { throw GGUFError.invalid(file: path, field: key, reason: "an element does not fit in Int") }
            return i
        }
    }
    public func numbers(_ key: String) throws -> [Double]? {
        guard let v = metadata[key] else { return nil }
        guard case let .array(t, a) = v, t != .string, t != .array, t != .bool else {
            throw GGUFError.wrongKeyType(file: path, key: key, expected: "an array of numbers")
        }
        return a.map { $0.double ?? 0 }
    }

    /// Bounds-checked little-endian reads over the mapping.
    struct Reader {
        let base: UnsafeRawPointer
        let size: Int
        let file: String
        var pos = 0

        mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
            guard n >= 0, n <= size - pos else { throw GGUFError.truncated(file: file, at: pos, need: what()) }
        }
        mutating func fixed<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
            try need(MemoryLayout<T>.size, what())
            let v = base.loadUnaligned(fromByteOffset: pos, as: T.self)
            pos += MemoryLayout<T>.size
            return T(littleEndian: v)
        }
        mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 { try fixed(UInt32.self, what()) }
        mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 { try fixed(UInt64.self, what()) }
        /// A count whose items take at least `minBytesEach` bytes each: refused when they cannot fit.
        mutating func count(_ what: String, minBytesEach: Int) throws -> Int {
            let v = try u64(what)
            guard v <= UInt64((size - pos) / minBytesEach) else {
                throw GGUFError.invalid(file: file, field: what, reason: "\(v) items cannot fit in the \(size - pos) bytes left")
            }
            return Int(v)
        }
        mutating func string(_ what: @autoclosure () -> String) throws -> String {
            let n = try u64("length of \(what())")
            guard n <= UInt64(size - pos) else { throw GGUFError.truncated(file: file, at: pos, need: "a string of \(n) bytes (\(what()))") }
            let s = String(decoding: UnsafeRawBufferPointer(start: base + pos, count: Int(n)), as: UTF8.self)
            pos += Int(n)
            return s
        }
        mutating func value(_ type: GGUFValueType, key: String, depth: Int) throws -> GGUFValue {
            switch type {
            case .u8: return .u8(try fixed(UInt8.self, key))
            case .i8: return .i8(try fixed(Int8.self, key))
            case .u16: return .u16(try fixed(UInt16.self, key))
            case .i16: return .i16(try fixed(Int16.self, key))
            case .u32: return .u32(try fixed(UInt32.self, key))
            case .i32: return .i32(try fixed(Int32.self, key))
            case .u64: return .u64(try fixed(UInt64.self, key))
            case .i64: return .i64(try fixed(Int64.self, key))
            case .f32: return .f32(Float(bitPattern: try fixed(UInt32.self, key)))
            case .f64: return .f64(Double(bitPattern: try fixed(UInt64.self, key)))
            case .bool:
                let b = try fixed(UInt8.self, key)
                guard b <= 1 else { throw GGUFError.invalid(file: file, field: key, reason: "bool byte \(b)") }
                return .bool(b == 1)
            case .string: return .string(try string(key))
            case .array:
                guard depth < 2 else { throw GGUFError.invalid(file: file, field: key, reason: "arrays nested deeper than 2") }
                let t = try u32("element type of '\(key)'")
                guard let et = GGUFValueType(rawValue: t) else { throw GGUFError.invalid(file: file, field: key, reason: "unknown element type \(t)") }
                let n = try count("element count of '\(key)'", minBytesEach: et.fixedSize ?? (et == .string ? 8 : 12))
                var items: [GGUFValue] = []
                items.reserveCapacity(n)
                for _ in 0..<n { items.append(try value(et, key: key, depth: depth + 1)) }
                return .array(et, items)
            }
        }
    }
}

/// Writes a GGUF v3 file: metadata and tensor infos first, then each tensor's bytes streamed by
/// the caller in the order given (each padded to the alignment), so a multi-GB file never sits in
/// memory. Writes `<path>.partial` and renames it over `path` in `finish()`.
public final class GGUFWriter {
    public struct Spec: Sendable {
        public var name: String
        public var dtype: DType
        /// Row-major shape (outermost first); written as ggml dims (reversed).
        public var shape: [Int]
        public init(name: String, dtype: DType, shape: [Int]) { self.name = name; self.dtype = dtype; self.shape = shape }
        public var byteCount: Int { dtype.bytes(elements: shape.reduce(1, *)) }
    }

    public let path: String
    let partialPath: String
    let fd: Int32
    let specs: [Spec]
    let offsets: [Int]
    let alignment = 32
    var next = 0
    var writtenInCurrent = 0
    var position: Int
    public let totalBytes: Int

    /// `metadata` in the order given (`general.architecture` first, by convention).
    public init(path: String, metadata: [(String, GGUFValue)], tensors: [Spec]) throws {
        self.path = path
        specs = tensors
        var h = ByteWriter()
        h.bytes(GGUFFile.magic)
        h.u32(3)
        h.u64(UInt64(tensors.count))
        h.u64(UInt64(metadata.count))
        for (k, v) in metadata {
            h.string(k)
            h.u32(v.type.rawValue)
            h.value(v)
        }
        var off = 0
        var offs: [Int] = []
        for s in tensors {
            precondition((s.shape.last ?? 1) % s.dtype.blockElements == 0, "GGUFWriter: \(s.name) rows are not whole blocks")
            h.string(s.name)
            h.u32(UInt32(s.shape.count))
            for d in s.shape.reversed() { h.u64(UInt64(d)) }
            h.u32(GGMLType.of(s.dtype).id)
            h.u64(UInt64(off))
            offs.append(off)
            off += (s.byteCount + alignment - 1) / alignment * alignment
        }
        while h.data.count % alignment != 0 { h.data.append(0) }
        offsets = offs.map { $0 + h.data.count }
        totalBytes = h.data.count + off
        partialPath = path + ".partial"
        try FileIO.requireReplaceable(path)
        fd = try FileIO.createWrite(partialPath)
        position = 0
        do {
            try h.data.withUnsafeBytes { try FileIO.pwrite(fd: fd, path: partialPath, from: $0.baseAddress!, count: $0.count, offset: 0) }
        } catch {
            FileIO.closeFile(fd)
            try? FileManager.default.removeItem(atPath: partialPath)
            throw error
        }
        position = h.data.count
    }

    /// Appends `count` bytes of the current tensor (tensors in the order given).
    public func write(_ bytes: UnsafeRawPointer, count: Int) throws {
        precondition(next < specs.count && writtenInCurrent + count <= specs[next].byteCount, "GGUFWriter: more bytes than the tensors hold")
        try FileIO.pwrite(fd: fd, path: partialPath, from: bytes, count: count, offset: offsets[next] + writtenInCurrent)
        writtenInCurrent += count
        if writtenInCurrent == specs[next].byteCount { next += 1; writtenInCurrent = 0 }
    }

    /// Checks every tensor was written, pads the file, syncs and renames it over `path`.
    public func finish() throws {
        precondition(next == specs.count, "GGUFWriter: \(specs.count - next) tensors not written")
        if let last = offsets.last, let s = specs.last {
            let end = last + s.byteCount
            let pad = (end + alignment - 1) / alignment * alignment - end
            if pad > 0 {
                let zeros = [UInt8](repeating: 0, count: pad)
                try zeros.withUnsafeBytes { try FileIO.pwrite(fd: fd, path: partialPath, from: $0.baseAddress!, count: pad, offset: end) }
            }
        }
        try FileIO.sync(fd: fd, path: partialPath)
        FileIO.closeFile(fd)
        try FileIO.rename(partialPath, to: path)
    }

    /// Closes and removes the partial file (after an error).
    public func abandon() {
        FileIO.closeFile(fd)
        try? FileManager.default.removeItem(atPath: partialPath)
    }

    struct ByteWriter {
        var data: [UInt8] = []
        mutating func bytes(_ b: [UInt8]) { data += b }
        mutating func int<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
        mutating func u32(_ v: UInt32) { int(v) }
        mutating func u64(_ v: UInt64) { int(v) }
        mutating func string(_ s: String) { u64(UInt64(s.utf8.count)); data += Array(s.utf8) }
        mutating func value(_ v: GGUFValue) {
            switch v {
            case let .u8(x): int(x)
            case let .i8(x): int(x)
            case let .u16(x): int(x)
            case let .i16(x): int(x)
            case let .u32(x): int(x)
            case let .i32(x): int(x)
            case let .u64(x): int(x)
            case let .i64(x): int(x)
            case let .f32(x): int(x.bitPattern)
            case let .f64(x): int(x.bitPattern)
            case let .bool(b): data.append(b ? 1 : 0)
            case let .string(s): string(s)
            case let .array(t, items):
                u32(t.rawValue)
                u64(UInt64(items.count))
                for i in items { value(i) }
            }
        }
    }
}
