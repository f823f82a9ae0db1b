package mgmt

// Patterns returns the authenticated API routes ("METHOD /api/..."), so that tests can check
// they cover every one.
func (s *Server) Patterns() []string { return append([]string(nil), s.patterns...) }
