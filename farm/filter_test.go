package farm

import (
	"encoding/json"
	"errors"
	"testing"
)

// host builds a Conf from k, v pairs; a Conf value nests.
func host(kv ...any) Conf {
	c := Conf{}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

// TestFilterMatch ports ZkFarmer's tests/test_filters.py.
func TestFilterMatch(t *testing.T) {
	tests := []struct {
		filter string
		conf   Conf
		want   bool
	}{
		// simple equality
		{"enable=1", host("enable", "1"), true},
		{"enable=1", host("enable", "0"), false},
		{"enable=1", host("notenabled", "1"), false},
		{"enable=1", host("notenabled", "1", "something", "18"), false},
		{"enable=1", host("something", "19", "enable", "0"), false},
		{"enable=1", host("something", "19", "enable", "1"), true},
		{"enable=1", host("something", "19", "enable", "1", "somethingelse", "1"), true},
		{"enable==1", host("enable", "1"), true},
		{"enable = 1", host("enable", "1"), true},
		// two equalities
		{"enable=1,maintainance=0", host("enable", "1", "maintainance", "0"), true},
		{"enable=1,maintainance=0", host("enable", "1", "maintainance", "0", "somethingelse", "43"), true},
		{"enable=1,maintainance=0", host("enable", "0", "maintainance", "0", "somethingelse", "43"), false},
		{"enable=1,maintainance=0", host("enable", "1", "maintainance", "1", "somethingelse", "43"), false},
		{"enable=1,maintainance=0", host("enable", "1", "somethingelse", "43"), false},
		// existence
		{"enable=1,working", host("enable", "1", "working", "0"), true},
		{"enable=1,working", host("enable", "1", "working", "1"), true},
		{"enable=1,working", host("enable", "1", "working", "1", "notworking", "1"), true},
		{"enable=1,working", host("enable", "0", "working", "1"), false},
		{"enable=1,working", host("enable", "1", "notworking", "1"), false},
		// inexistence
		{"enable=1,!working", host("enable", "1", "working", "0"), false},
		{"enable=1,!working", host("enable", "1", "working", "1"), false},
		{"enable=1,!working", host("enable", "1", "working", "1", "notworking", "1"), false},
		{"enable=1,!working", host("enable", "0", "working", "1"), false},
		{"enable=1,!working", host("enable", "1", "notworking", "1"), true},
		{"enable=1,!working", host("enable", "0", "notworking", "1"), false},
		{"enable=1, ! working", host("enable", "1"), true},
		// inequalities, compared as integers
		{"enable=1,weight>20", host("enable", "1", "weight", "21"), true},
		{"enable=1,weight>20", host("enable", "1", "weight", "121"), true},
		{"enable=1,weight>20", host("enable", "1", "weight", "1"), false},
		{"enable=1,weight>20", host("enable", "1", "weight", "20"), false},
		{"enable=1,weight>20", host("enable", "0", "weight", "21"), false},
		{"enable=1,weight>20", host("enable", "1"), false},
		{"enable=1,weight>=20", host("enable", "1", "weight", "20"), true},
		{"enable=1,weight>=20", host("enable", "1", "weight", "19"), false},
		{"enable=1,weight>=20", host("enable", "1", "weight", "21"), true},
		{"enable=1,weight<=20", host("enable", "1", "weight", "20"), true},
		{"enable=1,weight<=20", host("enable", "1", "weight", "19"), true},
		{"enable=1,weight<=20", host("enable", "1", "weight", "21"), false},
		{"enable=1,weight<20", host("enable", "1", "weight", "20"), false},
		{"enable=1,weight<20", host("enable", "1", "weight", "19"), true},
		{"enable=1,weight<20", host("enable", "1", "weight", "21"), false},
		{"enable=1,weight!=20", host("enable", "1", "weight", "20"), false},
		{"enable=1,weight!=20", host("enable", "1", "weight", "19"), true},
		{"enable=1,weight!=20", host("enable", "1", "weight", "121"), true},
		{"enable=1,weight!=20", host("enable", "1"), false},
		{"weight<100", host("weight", "-5"), true},
		// numbers stored as JSON numbers compare the same
		{"weight>20", host("weight", json.Number("121")), true},
		{"weight=20", host("weight", json.Number("20")), true},
		// not both integers: compared as strings
		{"version>1.10", host("version", "1.9"), true},
		{"name<m", host("name", "db"), true},
		{"name=db", host("name", "db-01"), false},
		// empty filter
		{"", host(), true},
		{"", host("1", "2"), true},
		{" ", host("3", "4"), true},
		// nested fields
		{"enable=1,mysql.replication_delay<20", host("enable", "1", "mysql", host("replication_delay", "10")), true},
		{"enable=1,mysql.replication_delay<20", host("enable", "1", "mysql", host("replication_delay", "30")), false},
		{"enable=1,mysql.replication_delay<20", host("enable", "0", "mysql", host("replication_delay", "10")), false},
		{"enable=1,mysql.replication_delay<20", host("enable", "1"), false},
		{"mysql", host("mysql", host()), true},
		{"!mysql.role", host("mysql", host()), true},
		// values holding operator characters
		{"url=a=b", host("url", "a=b"), true},
		{"a=", host("a", ""), true},
		{"a=", host(), false},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			f, err := ParseFilter(tt.filter)
			if err != nil {
				t.Fatalf("ParseFilter(%q) error %v", tt.filter, err)
			}
			if got := f.Match(tt.conf); got != tt.want {
				t.Errorf("ParseFilter(%q).Match(%v) = %v, want %v", tt.filter, tt.conf, got, tt.want)
			}
			if f.String() != tt.filter {
				t.Errorf("String() = %q, want %q", f.String(), tt.filter)
			}
		})
	}
}

func TestFilterEmpty(t *testing.T) {
	for in, want := range map[string]bool{"": true, "  ": true, "a": false, "!a": false} {
		f, err := ParseFilter(in)
		if err != nil || f.Empty() != want {
			t.Errorf("ParseFilter(%q).Empty() = %v, %v, want %v", in, f.Empty(), err, want)
		}
	}
	if !(Filter{}).Match(host("a", "1")) {
		t.Error("Filter{}.Match = false, want true")
	}
}

func TestFilterBad(t *testing.T) {
	for _, in := range []string{
		"a=1,,b", "a=1,", ",a", "=x", "==x", ">1", "a..", "a..b=1", ".a", "a.=1", "!", "!a..b", "!.a",
		"a!1", "!a=1",
	} {
		t.Run(in, func(t *testing.T) {
			if f, err := ParseFilter(in); !errors.Is(err, ErrBadFilter) {
				t.Errorf("ParseFilter(%q) = %v, %v, want ErrBadFilter", in, f, err)
			}
		})
	}
}
