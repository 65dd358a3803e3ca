// `use_subject_as_username`: the client certificate's subject as Mosquitto makes it, which is
// OpenSSL's X509_NAME_print_ex(..., XN_FLAG_RFC2253): the RDNs last to first, joined by ",", the
// attributes of a multi-valued RDN by "+", short attribute names, values escaped as RFC 2253 with
// OpenSSL's additions (bytes above 0x7F and control characters as \XX, values of unknown types and
// of unknown attributes as #HEX of their DER). `openssl x509 -noout -subject -nameopt RFC2253`
// prints the same string.

extension DERSubject {
    /// The subject of a DER certificate in RFC 2253 form, or nil when the certificate cannot be read.
    static func rfc2253(certificateDER bytes: [UInt8]) -> String? {
        guard let fields = tbsFields(bytes) else { return nil }
        var attributes: [(set: Int, name: String, value: String)] = []
        for (setIndex, set) in children(bytes, of: fields[4]).enumerated() where set.tag == 0x31 {
            for attribute in children(bytes, of: set) where attribute.tag == 0x30 {
                let parts = children(bytes, of: attribute)
                guard parts.count == 2, parts[0].tag == 0x06 else { return nil }
                let oid = Array(parts[0].content)
                let der = Array(bytes[(parts[0].end)..<parts[1].end])
                if let name = shortNames[oid] {
                    attributes.append(
                        (setIndex, name, value(tag: parts[1].tag, content: Array(parts[1].content), der: der))
                    )
                } else {
                    // OpenSSL names an attribute it does not know by its OID and dumps its value.
                    attributes.append((setIndex, oidText(oid) ?? "UNDEF", "#" + hex(der)))
                }
            }
        }
        var text = ""
        var previousSet: Int? = nil
        for attribute in attributes.reversed() {
            if let previousSet { text += previousSet == attribute.set ? "+" : "," }
            text += attribute.name + "=" + attribute.value
            previousSet = attribute.set
        }
        return text
    }

    /// A value as OpenSSL's ASN1_STRFLGS_RFC2253 prints it.
    private static func value(tag: UInt8, content: [UInt8], der: [UInt8]) -> String {
        var utf8: [UInt8] = []
        switch tag {
        case 0x0C:  // UTF8String: its bytes as they are
            utf8 = content
        case 0x12, 0x13, 0x14, 0x16, 0x17, 0x18, 0x1A:  // one byte per character (Latin-1)
            for byte in content { utf8 += Array(String(UnicodeScalar(byte)).utf8) }
        case 0x1E, 0x1C:  // BMPString (UCS-2), UniversalString (UCS-4), big-endian
            let width = tag == 0x1E ? 2 : 4
            guard content.count % width == 0 else { return "#" + hex(der) }
            for start in stride(from: 0, to: content.count, by: width) {
                let code = content[start..<(start + width)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                guard let scalar = UnicodeScalar(code) else { return "#" + hex(der) }
                utf8 += Array(String(scalar).utf8)
            }
        default:
            return "#" + hex(der)
        }
        var text = ""
        for (index, byte) in utf8.enumerated() {
            let first = index == 0
            let last = index == utf8.count - 1
            switch byte {
            case 0x80...0xFF, 0x00..<0x20, 0x7F:
                text += "\\" + hex([byte])
            case UInt8(ascii: ","), UInt8(ascii: "+"), UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "<"),
                UInt8(ascii: ">"), UInt8(ascii: ";"):
                text += "\\" + String(UnicodeScalar(byte))
            case UInt8(ascii: "#") where first, UInt8(ascii: " ") where first || last:
                text += "\\" + String(UnicodeScalar(byte))
            default:
                text.append(Character(UnicodeScalar(byte)))
            }
        }
        return text
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789ABCDEF")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
    }

    /// `1.2.3.4` from an OID's DER content.
    private static func oidText(_ content: [UInt8]) -> String? {
        var arcs: [UInt64] = []
        var current: UInt64 = 0
        for byte in content {
            guard current < (1 << 56) else { return nil }
            current = current << 7 | UInt64(byte & 0x7F)
            if byte & 0x80 == 0 {
                arcs.append(current)
                current = 0
            }
        }
        guard let head = arcs.first, content.last.map({ $0 & 0x80 == 0 }) == true else { return nil }
        let first: UInt64 = min(head / 40, 2)
        return ([first, head - first * 40] + arcs.dropFirst()).map(String.init).joined(separator: ".")
    }

    /// OpenSSL's short names of the attributes certificates carry.
    private static let shortNames: [[UInt8]: String] = {
        let x520: [(UInt8, String)] = [
            (3, "CN"), (4, "SN"), (5, "serialNumber"), (6, "C"), (7, "L"), (8, "ST"), (9, "street"), (10, "O"),
            (11, "OU"), (12, "title"), (13, "description"), (15, "businessCategory"), (16, "postalAddress"),
            (17, "postalCode"), (18, "postOfficeBox"), (20, "telephoneNumber"), (41, "name"), (42, "GN"),
            (43, "initials"), (44, "generationQualifier"), (45, "x500UniqueIdentifier"), (46, "dnQualifier"),
            (65, "pseudonym"), (72, "role"), (97, "organizationIdentifier"),
        ]
        var table = Dictionary(uniqueKeysWithValues: x520.map { ([0x55, 0x04, $0.0], $0.1) })
        let pkcs9: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09]
        table[pkcs9 + [0x01]] = "emailAddress"
        table[pkcs9 + [0x02]] = "unstructuredName"
        table[pkcs9 + [0x08]] = "unstructuredAddress"
        let pilot: [UInt8] = [0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01]
        table[pilot + [0x19]] = "DC"
        table[pilot + [0x01]] = "UID"
        let jurisdiction: [UInt8] = [0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x3C, 0x02, 0x01]
        table[jurisdiction + [0x01]] = "jurisdictionL"
        table[jurisdiction + [0x02]] = "jurisdictionST"
        table[jurisdiction + [0x03]] = "jurisdictionC"
        return table
    }()
}
